package transfercmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func TestImageNameFrom(t *testing.T) {
	for in, want := range map[string]string{
		"https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2": "debian-12-genericcloud-amd64",
		"/srv/images/ubuntu-24.04.img":               "ubuntu-24.04",
		"http://h/x/disk.raw?token=abc":              "disk",
		"/srv/" + strings.Repeat("a", 80) + ".qcow2": strings.Repeat("a", api.MaxNameLength),
	} {
		if got := imageNameFrom(in); got != want {
			t.Errorf("imageNameFrom(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestImportDoneSaysItOnce(t *testing.T) {
	got := importDone(api.ImportResult{VMs: []api.Ref{{Name: "db1"}}, Disk: "disk1"})
	if got != "imported the disk as disk1 of vm db1" {
		t.Errorf("a disk import's result: %q", got)
	}
	got = importDone(api.ImportResult{VMs: []api.Ref{{Name: "app1"}}, Warnings: []string{"the floppy is dropped"}})
	if got != "imported vm app1\n  warning: the floppy is dropped" {
		t.Errorf("an import with a warning: %q", got)
	}
}

func TestPlanOfADiskIntoAVM(t *testing.T) {
	var b strings.Builder
	printPlan(&cmdutil.Globals{Stdout: &b, Output: cmdutil.OutputTable}, &api.ImportPlan{Format: api.ImportFormatDisk, VMs: []api.ImportVM{{
		Name: "db1", CPUs: 2, Memory: api.MustSize("1GiB"), Existing: true,
		Disks: []api.ImportDisk{{Name: "disk1", Bus: "scsi", File: "data.vmdk", Format: "vmdk (streamOptimized)"}}}}})
	want := "VM db1 (exists, powered off): the disk is added to it\n  disk1: the image's size, scsi bus, from data.vmdk (vmdk (streamOptimized))\nNothing was changed (dry run).\n"
	if b.String() != want {
		t.Errorf("plan:\n%s\nwant:\n%s", b.String(), want)
	}
}

// image build-test finds out there is no client config before it builds
// anything (which takes a while).
func TestBuildTestChecksTheConfigFirst(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	var b bytes.Buffer
	g := &cmdutil.Globals{Config: filepath.Join(dir, "missing.json"), Output: cmdutil.OutputTable, Stdout: &b, Stderr: &b}
	cmd := NewImageCmd(g)
	cmd.SetOut(&b)
	cmd.SetErr(&b)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs([]string{"build-test", "--cache", cache})
	err := cmd.Execute()
	out := b.String()
	if err == nil || !strings.Contains(err.Error(), "no client config at "+filepath.Join(dir, "missing.json")) {
		t.Fatalf("want an error about the missing client config, got %v:\n%s", err, out)
	}
	if strings.Contains(out, "building") {
		t.Errorf("it started building before finding there is no client config:\n%s", out)
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("the build's cache was made: %v", err)
	}
}
