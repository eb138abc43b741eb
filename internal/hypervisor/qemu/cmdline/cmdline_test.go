package cmdline

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
	// The files of a VM whose runtime folder is /run/vdc/01a2-vm and
	// whose folder is /var/lib/vdc/vms/01a2-vm, as the driver lays them out.
	f := Files{QMP: "/run/vdc/01a2-vm/qmp.sock", QGA: "/run/vdc/01a2-vm/qga.sock", Console: "/run/vdc/01a2-vm/console.sock",
		VNC: "/run/vdc/01a2-vm/vnc.sock", ConsoleLog: "/var/lib/vdc/vms/01a2-vm/console.log",
		PIDFile: "/var/lib/vdc/vms/01a2-vm/qemu.pid", Seed: "/var/lib/vdc/vms/01a2-vm/cidata.iso"}
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
	// A copy receiving a VM that had vCPUs and memory hot-added has them
	// from the start, as the sender has them.
	hot := hypervisor.VMConfig{ID: "01a20096-7419-776f-b43d-425f3f583bed", Name: "app1", CPUs: 3, MemoryBytes: 768 << 20,
		MaxCPUs: 4, MaxMemoryBytes: 2 << 30, VNC: true}
	hot.Hardware = &api.VMHardware{CPUs: 1, MaxCPUs: 4, MemoryBytes: 256 << 20, MaxMemoryBytes: 2 << 30,
		HotCPUs: []api.HotCPU{
			{ID: "cpu1", Type: "qemu64-x86_64-cpu", Props: map[string]int{"socket-id": 0, "core-id": 1, "thread-id": 0, "node-id": 0}},
			{ID: "cpu2", Type: "qemu64-x86_64-cpu", Props: map[string]int{"socket-id": 0, "core-id": 2, "thread-id": 0, "node-id": 0}},
		},
		DIMMs: []api.Size{256 << 20, 256 << 20}}
	cases["hot-added"] = hot
	// With room for hot-add, as a VM starts.
	cases["hot-add-room"] = hypervisor.VMConfig{ID: "01a20096-7419-776f-b43d-425f3f583bee", Name: "app2", CPUs: 2, MemoryBytes: 1 << 30,
		MaxCPUs: 8, MaxMemoryBytes: 8 << 30}
	// A copy receiving a VM that started with nic0 and nic1, lost nic0
	// and got nic2 hot-plugged since: nic0's root port stays, empty, and
	// nic2 is in the hot-plug port it went into.
	moved := hypervisor.VMConfig{ID: "01a20096-7419-776f-b43d-425f3f583bef", Name: "lb1", CPUs: 1, MemoryBytes: 256 << 20,
		NICs: []hypervisor.NICConfig{{Name: "nic1", MAC: "52:54:00:00:00:11", Model: "virtio", Tap: "vt0123abcdn1"},
			{Name: "nic2", MAC: "52:54:00:00:00:12", Model: "e1000", Slot: "hp1"}}}
	moved.Hardware = &api.VMHardware{CPUs: 1, MemoryBytes: 256 << 20, NICPorts: []string{"nic0", "nic1"}}
	cases["nics-changed-live"] = moved
	// A copy receiving a VM started by a vdc that put NICs on the root bus.
	old := hypervisor.VMConfig{ID: "01a20096-7419-776f-b43d-425f3f583bf0", Name: "old1", CPUs: 1, MemoryBytes: 256 << 20,
		NICs: []hypervisor.NICConfig{{Name: "nic0", MAC: "52:54:00:00:00:21", Model: "virtio"}}}
	old.Hardware = &api.VMHardware{CPUs: 1, MemoryBytes: 256 << 20}
	cases["nics-root-bus"] = old
	for name, cfg := range cases {
		hw := hypervisor.BootHardware(cfg)
		if cfg.Hardware != nil {
			hw = *cfg.Hardware
		}
		got := strings.Join(Args(cfg, hw, f, "tcg"), "\n") + "\n"
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
			t.Errorf("%s: command line changed; if on purpose, run go test ./internal/hypervisor/qemu/cmdline -run Golden -update\n--- got\n%s--- want\n%s", name, got, want)
		}
	}
}
