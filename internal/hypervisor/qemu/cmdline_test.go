package qemu

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestCommandLineGolden(t *testing.T) {
	p := paths{run: "/run/vdc/01a2-vm", dir: "/var/lib/vdc/vms/01a2-vm"}
	cases := map[string]hypervisor.VMConfig{
		"kernel-boot": {ID: "01a20096-7419-776f-b43d-425f3f583beb", Name: "web1", CPUs: 2, MemoryBytes: 256 << 20,
			Boot: &hypervisor.BootConfig{Kernel: "/ds/images/test/vmlinuz", Initrd: "/ds/images/test/initrd.img", Cmdline: "console=ttyS0"},
			NICs: []hypervisor.NICConfig{{Name: "nic0", MAC: "52:54:00:12:34:56", Model: "virtio"}}},
		"disks-all-buses": {ID: "01a20096-7419-776f-b43d-425f3f583bec", Name: "db1", CPUs: 4, MemoryBytes: 4 << 30, VNC: true,
			Disks: []hypervisor.DiskConfig{
				{Name: "disk0", Path: "/ds/db1/disk0.qcow2", Bus: api.BusVirtio},
				{Name: "disk1", Path: "/ds/db1/disk,1.qcow2", Bus: api.BusSCSI},
				{Name: "disk2", Path: "/ds/db1/disk2.qcow2", Bus: api.BusSCSI},
				{Name: "disk3", Path: "/ds/db1/disk3.qcow2", Bus: api.BusSATA},
			},
			CDROM: "/isos/debian.iso",
			NICs:  []hypervisor.NICConfig{{Name: "nic0", MAC: "52:54:00:00:00:01", Model: "e1000"}, {Name: "nic1", MAC: "52:54:00:00:00:02"}}},
	}
	for name, cfg := range cases {
		got := strings.Join(args(cfg, p, "tcg", "127.0.0.1"), "\n") + "\n"
		golden := filepath.Join("testdata", name+".args")
		if *update {
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -update to create it)", err)
		}
		if got != string(want) {
			t.Errorf("%s: command line changed; if on purpose, run go test ./internal/hypervisor/qemu -run Golden -update\n--- got\n%s--- want\n%s", name, got, want)
		}
	}
}
