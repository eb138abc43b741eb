package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/testenv"
)

// waitTaskMessage waits until a task's progress message says something.
func (cl *cluster) waitTaskMessage(id, substr string) {
	eventually(cl.t, 2*time.Minute, "task "+id+" to be "+substr, func() bool {
		tk, err := cl.c.GetTask(context.Background(), id)
		return err == nil && (strings.Contains(tk.Message, substr) || api.TaskDone(tk.State))
	})
}

// Killing the agent, the server, or QEMU in the middle of a snapshot
// delete (a live merge) loses nothing: the task finishes the merge once
// the agent is back (or the new server resumes it, or offline once QEMU
// is gone), and the data is all there.
func TestInterruptedMergesLoseNothing(t *testing.T) {
	needQEMU(t)
	cl := newCluster(t)
	cl.qemu = true
	// Merges slow enough to be caught in the middle.
	cl.agentArgs = []string{"--merge-bandwidth", "16MiB"}
	cl.inventory()
	cl.vdc("image", "build-test")
	t.Cleanup(func() { cl.killVMProcesses() })
	cl.vdc("vm", "create", "m1", "--memory", "256MiB", "--image", "test", "--disk", "512MiB", "--host", "host-1", "--no-nic", "--start")
	cl.waitGuestUp("m1")
	for _, victim := range []string{"agent", "server", "qemu"} {
		cl.writeBlock("m1", 1, "before-"+victim)
		cl.vdc("vm", "snapshot", "create", "m1", "s-"+victim)
		// Enough new data that the merge takes a while.
		cl.vdc("vm", "exec", "m1", "--timeout", "5m", "--", "/bin/sh", "-c", "dd if=/dev/zero of=/dev/vda bs=1M seek=16 count=96 conv=fsync 2>/dev/null")
		cl.writeBlock("m1", 2, "after-"+victim)
		id := strings.TrimSpace(cl.vdc("vm", "snapshot", "rm", "m1", "s-"+victim, "--async"))
		cl.waitTaskMessage(id, "merging")
		switch victim {
		case "agent":
			oldAddr := cl.hosts()["host-1"].Status.Address
			cl.agents["host-1"].kill9()
			cl.startAgent("host-1")
			eventually(t, time.Minute, "the new agent of host-1 reporting", func() bool { return cl.hosts()["host-1"].Status.Address != oldAddr })
		case "server":
			cl.server.kill9()
			cl.startServer()
		case "qemu":
			for _, pid := range qemuPIDs(t, "m1") {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		out := cl.vdc("task", "wait", id)
		if strings.Contains(out, "failed") {
			t.Fatalf("snapshot delete after the %s was killed: %s", victim, out)
		}
		vm := cl.vm("m1")
		if len(vm.Spec.Snapshots) != 0 || !strings.HasSuffix(vm.Spec.Disks[0].Path, "/disk0.qcow2") {
			t.Fatalf("after the %s was killed mid-merge: snapshots %v, disk %s", victim, vm.Spec.Snapshots, vm.Spec.Disks[0].Path)
		}
		if victim == "qemu" {
			eventually(t, time.Minute, "m1 off after its QEMU was killed", func() bool { return cl.vm("m1").Status.PowerState == api.PowerOff })
			cl.vdc("vm", "start", "m1")
		}
		cl.waitGuestUp("m1")
		cl.expectBlocks("m1", "after the "+victim+" was killed mid-merge", map[int]string{1: "before-" + victim, 2: "after-" + victim})
	}
	// No file of the merged snapshots is left behind.
	files, _ := filepath.Glob(filepath.Join(cl.dir, "datastore1", "m1-*", "*"))
	if len(files) != 1 || filepath.Base(files[0]) != "disk0.qcow2" {
		t.Fatalf("files left in the VM's folder: %v", files)
	}
}

// Cloud images: an image imported from a URL or a host path, a VM with a
// NoCloud seed the guest reads, and bad imports refused or cleaned up.
func TestCloudImagesAndSeeds(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "genisoimage", "genisoimage")
	cl := newQEMUCluster(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "cloud.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", img, "2G").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	out := cl.vdc("image", "import", srv.URL+"/cloud.qcow2", "--name", "cloud-12")
	if !strings.Contains(out, "image cloud-12 imported (qcow2, 2 GiB)") {
		t.Fatalf("import from a URL: %s", out)
	}
	raw := filepath.Join(dir, "plain.img")
	if err := os.WriteFile(raw, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// A file that is in no datastore is uploaded by the CLI; one in a
	// datastore is copied by a host.
	if out := cl.vdc("image", "import", raw); !strings.Contains(out, "image plain imported (raw, 8 MiB)") || !strings.Contains(out, "uploaded to datastore") {
		t.Fatalf("import from a file here: %s", out)
	}
	inDS := cl.datastoreFile("plain2.img")
	if err := os.WriteFile(inDS, make([]byte, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := cl.vdc("image", "import", inDS); !strings.Contains(out, "image plain2 imported (raw, 8 MiB)") || strings.Contains(out, "uploaded") {
		t.Fatalf("import from a file in a datastore: %s", out)
	}
	// The probe of the security issue: host files are not the API's to
	// read, directly or through a symlink in a datastore, and the answer
	// tells nothing of them.
	os.Symlink("/etc/shadow", cl.datastoreFile("shadow.img"))
	for _, src := range []string{"/etc/shadow", cl.datastoreFile("shadow.img")} {
		task, err := cl.c.ImportImage(context.Background(), api.ImageImportRequest{Name: "shadow", Source: src})
		if err == nil { // a symlink: the server cannot tell, the host refuses it
			_, err = cl.c.Wait(context.Background(), task)
		}
		if err == nil || !strings.Contains(err.Error(), "is not an http(s) URL or a file in a datastore") || strings.Contains(err.Error(), "bytes") {
			t.Fatalf("POST /images/import from %s: %v", src, err)
		}
	}
	// Hostile or broken sources: refused, and nothing is kept.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("just text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := cl.try("image", "import", srv.URL+"/notes.txt"); err == nil || !strings.Contains(out, "raw") && !strings.Contains(out, "image") {
		t.Fatalf("importing a text file: %v %s", err, out)
	}
	if out, err := cl.try("image", "import", srv.URL+"/missing.qcow2", "--name", "missing"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("importing a missing URL: %v %s", err, out)
	}
	if out, err := cl.try("image", "import", "ftp://example/x.qcow2", "--name", "ftp"); err == nil || !strings.Contains(out, "http(s) URL") {
		t.Fatalf("importing an ftp URL: %v %s", err, out)
	}
	var imgs []*api.Image
	cl.json(&imgs, "image", "ls")
	for _, im := range imgs {
		if im.Metadata.Name == "missing" || im.Metadata.Name == "notes" {
			t.Fatalf("a failed import left image %s", im.Metadata.Name)
		}
	}
	// A linked VM on the cloud image, with a seed; the test guest reads
	// the seed as a stock cloud image's cloud-init would.
	ud := filepath.Join(dir, "user-data.yaml")
	if err := os.WriteFile(ud, []byte("#cloud-config\npackages: [nginx]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ1lZW9k0bWvkMl0Ad1xwkGvVtJVWyq8G6v4tqPz3Ewr test@vdc"
	cl.vdc("vm", "create", "ci1", "--memory", "256MiB", "--image", "cloud-12", "--linked", "--no-nic", "--host", "host-1")
	if vm := cl.vm("ci1"); !vm.Spec.Disks[0].Linked || vm.Spec.Disks[0].SizeBytes != api.MustSize("2GiB") {
		t.Fatalf("vm on the cloud image: %+v", vm.Spec.Disks[0])
	}
	cl.vdc("vm", "create", "seeded", "--memory", "256MiB", "--image", "test", "--no-nic", "--cloud-init", ud, "--ssh-key", key, "--start")
	cl.waitGuestUp("seeded")
	got := cl.vdc("vm", "exec", "seeded", "--", "/bin/sh", "-c",
		"mkdir -p /mnt/seed && mount -t iso9660 -o ro /dev/sr0 /mnt/seed && echo \"label=$(dd if=/dev/sr0 bs=1 skip=32808 count=32 2>/dev/null)\"; for f in meta-data user-data vendor-data; do echo \"== $f\"; cat /mnt/seed/$f; done")
	vm := cl.vm("seeded")
	for _, want := range []string{"label=cidata ", "instance-id: " + vm.Metadata.ID, "local-hostname: seeded", "packages: [nginx]", key, "hostname: seeded"} {
		if !strings.Contains(got, want) {
			t.Fatalf("the seed lacks %q:\n%s", want, got)
		}
	}
	if out, err := cl.try("vm", "create", "bad", "--memory", "256MiB", "--image", "test", "--ssh-key", "not-a-key-file"); err == nil || !strings.Contains(out, "not a public key") {
		t.Fatalf("a bad ssh key: %v %s", err, out)
	}
}

// A datastore that fills up: operations that would need more room are
// refused with a clear error, the datastore raises its alarm, and a guest
// whose thin disk cannot grow is paused with the reason shown.
func TestDatastoreFillsUp(t *testing.T) {
	testenv.NeedRoot(t, "to mount a small tmpfs datastore")
	cl := newQEMUCluster(t)
	tiny := filepath.Join(cl.dir, "tiny")
	if err := os.MkdirAll(tiny, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", tiny).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		cl.killVMProcesses()
		_ = exec.Command("umount", "-l", tiny).Run()
	})
	cl.vdc("datastore", "create", "tiny", "--path", tiny)
	eventually(t, time.Minute, "tiny measured", func() bool {
		var ds api.Datastore
		cl.json(&ds, "datastore", "info", "tiny")
		return ds.Status.CapacityBytes > 0 && len(ds.Status.Hosts) == 2
	})
	cl.vdc("vm", "create", "fill", "--memory", "256MiB", "--image", "test", "--disk", "256MiB,datastore=tiny", "--no-nic", "--host", "host-1", "--start")
	cl.waitGuestUp("fill")
	// A thick disk bigger than the free space is refused up front.
	if out, err := cl.try("vm", "disk", "add", "fill", "--size", "200MiB", "--thick", "--datastore", "tiny"); err == nil || !strings.Contains(out, "free") {
		t.Fatalf("a thick disk larger than the datastore: %v %s", err, out)
	}
	cl.vdc("vm", "exec", "fill", "--", "/bin/sh", "-c", "dd if=/dev/zero of=/dev/vda bs=1M count=120 conv=fsync >/dev/null 2>&1 &")
	eventually(t, 2*time.Minute, "fill paused for lack of space", func() bool {
		vm := cl.vm("fill")
		return vm.Status.PowerState == api.PowerSuspended && strings.Contains(vm.Status.Message, "out of space")
	})
	if info := cl.vdc("vm", "info", "fill"); !strings.Contains(info, "no space left") {
		t.Fatalf("vm info does not say why the VM is paused:\n%s", info)
	}
	eventually(t, time.Minute, "tiny's alarm", func() bool {
		var ds api.Datastore
		cl.json(&ds, "datastore", "info", "tiny")
		return ds.Status.Alarm == api.DatastoreAlarmCritical
	})
	if out, err := cl.try("vm", "snapshot", "create", "fill", "mem", "--memory"); err == nil || !strings.Contains(out, "free") {
		t.Fatalf("a memory snapshot on a full datastore: %v %s", err, out)
	}
	cl.vdc("vm", "delete", "fill", "--force")
}
