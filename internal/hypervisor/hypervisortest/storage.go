package hypervisortest

import (
	"path/filepath"
	"testing"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// RunStorage runs the storage conformance suite (hypervisor.Storage):
// snapshots of VMs that are off and running, reverts with and without
// memory, merges (idempotent), copies, and disks added, grown and
// removed, with the errors callers rely on. The harness's configs get one
// 64 MiB virtio disk, named disk0, in the VM's directory.
func RunStorage(t *testing.T, h Harness) {
	if h.Timeout <= 0 {
		h.Timeout = DefaultTimeout
	}
	tests := []struct {
		name string
		fn   func(*testing.T, *env, hypervisor.Storage)
	}{
		{"SnapshotRevertMerge", testSnapshotRevertMerge},
		{"Disks", testDisks},
		{"Copy", testCopy},
		{"UnknownVM", testStorageUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, h)
			st, ok := e.d.(hypervisor.Storage)
			if !ok {
				t.Skip("the driver does not implement hypervisor.Storage")
			}
			tc.fn(t, e, st)
		})
	}
}

// withDisk gives a config its test disk.
func withDisk(cfg hypervisor.VMConfig) hypervisor.VMConfig {
	cfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(cfg.Dir, "disk0.qcow2"), SizeBytes: 64 << 20, Bus: "virtio"}}
	return cfg
}

func (e *env) defineWithDisk(id string) hypervisor.VMConfig {
	e.t.Helper()
	cfg := withDisk(e.config(id))
	e.ok(e.d.Define(e.ctx(), cfg), "define "+id)
	return cfg
}

func diskNames(us []hypervisor.DiskUsage) []string {
	var out []string
	for _, u := range us {
		out = append(out, u.Name)
	}
	return out
}

func testSnapshotRevertMerge(t *testing.T, e *env, st hypervisor.Storage) {
	cfg := e.defineWithDisk("vm1")
	base := cfg.Disks[0].Path
	ov1 := filepath.Join(cfg.Dir, "disk0-1.qcow2")
	res, err := st.Snapshot(e.ctx(), "vm1", hypervisor.SnapshotRequest{Overlays: map[string]string{"disk0": ov1}})
	e.ok(err, "snapshot a VM that is off")
	if res.Memory {
		t.Errorf("a VM that is off has no memory to save, but the snapshot says it has")
	}
	// Again with the same overlay: done already, not an error.
	_, err = st.Snapshot(e.ctx(), "vm1", hypervisor.SnapshotRequest{Overlays: map[string]string{"disk0": ov1}})
	e.ok(err, "repeat a snapshot")
	e.ok(e.d.Start(e.ctx(), "vm1"), "start")
	e.expect("vm1", hypervisor.StateOn)
	ov2, mem := filepath.Join(cfg.Dir, "disk0-2.qcow2"), filepath.Join(cfg.Dir, "mem.vmstate")
	res, err = st.Snapshot(e.ctx(), "vm1", hypervisor.SnapshotRequest{Overlays: map[string]string{"disk0": ov2}, MemoryFile: mem})
	e.ok(err, "snapshot a running VM with its memory")
	if !res.Memory {
		t.Fatalf("the memory of a running VM was not saved: %+v", res)
	}
	e.expect("vm1", hypervisor.StateOn)
	us, err := st.Usage(e.ctx(), "vm1")
	e.ok(err, "usage")
	if len(us) != 1 || us[0].Name != "disk0" || us[0].VirtualBytes != 64<<20 {
		t.Fatalf("usage after two snapshots: %+v", us)
	}
	// A revert with memory runs the VM again; without, it leaves it off.
	ov3 := filepath.Join(cfg.Dir, "disk0-3.qcow2")
	e.ok(st.Revert(e.ctx(), "vm1", hypervisor.RevertRequest{Disks: []hypervisor.DiskConfig{{Name: "disk0", Path: ov3, SizeBytes: 64 << 20, Bus: "virtio", Source: ov1}},
		CPUs: cfg.CPUs, MemoryBytes: cfg.MemoryBytes, MemoryFile: mem}), "revert with memory")
	e.wait("vm1", hypervisor.StateOn)
	ov4 := filepath.Join(cfg.Dir, "disk0-4.qcow2")
	e.ok(st.Revert(e.ctx(), "vm1", hypervisor.RevertRequest{Disks: []hypervisor.DiskConfig{{Name: "disk0", Path: ov4, SizeBytes: 64 << 20, Bus: "virtio", Source: base}},
		CPUs: cfg.CPUs, MemoryBytes: cfg.MemoryBytes}), "revert without memory")
	e.expect("vm1", hypervisor.StateOff)
	// Merge the active overlay into its base, twice (the second finds it
	// done), and the VM starts on the base.
	m := hypervisor.DiskMerge{Disk: "disk0", Top: ov4, Base: base, Active: true}
	e.ok(st.MergeDisk(e.ctx(), "vm1", m), "merge")
	e.ok(st.MergeDisk(e.ctx(), "vm1", m), "merge again")
	e.ok(st.RemoveFiles(e.ctx(), []string{ov1, ov2, ov3, mem}), "remove files")
	e.ok(e.d.Start(e.ctx(), "vm1"), "start on the merged disk")
	e.expect("vm1", hypervisor.StateOn)
}

func testDisks(t *testing.T, e *env, st hypervisor.Storage) {
	cfg := e.defineWithDisk("vm1")
	e.ok(e.d.Start(e.ctx(), "vm1"), "start")
	d1 := hypervisor.DiskConfig{Name: "disk1", Path: filepath.Join(cfg.Dir, "disk1.qcow2"), SizeBytes: 32 << 20, Bus: "virtio"}
	e.ok(st.AddDisk(e.ctx(), "vm1", d1), "hot-plug a virtio disk")
	e.is(st.AddDisk(e.ctx(), "vm1", d1), hypervisor.ErrInvalid, "add a disk of a name the VM has")
	sata := hypervisor.DiskConfig{Name: "disk2", Path: filepath.Join(cfg.Dir, "disk2.qcow2"), SizeBytes: 32 << 20, Bus: "sata"}
	e.is(st.AddDisk(e.ctx(), "vm1", sata), hypervisor.ErrWrongState, "hot-plug a SATA disk")
	e.ok(st.ResizeDisk(e.ctx(), "vm1", "disk1", 48<<20), "grow a disk live")
	e.is(st.ResizeDisk(e.ctx(), "vm1", "disk1", 16<<20), hypervisor.ErrInvalid, "shrink a disk")
	e.is(st.ResizeDisk(e.ctx(), "vm1", "nope", 16<<20), hypervisor.ErrInvalid, "resize a disk the VM lacks")
	us, err := st.Usage(e.ctx(), "vm1")
	e.ok(err, "usage")
	if len(us) != 2 || us[1].VirtualBytes != 48<<20 {
		t.Fatalf("usage after add and grow: %+v", us)
	}
	e.ok(e.d.PowerOff(e.ctx(), "vm1"), "power off")
	e.ok(st.RemoveDisk(e.ctx(), "vm1", "disk1"), "remove a disk")
	e.is(st.RemoveDisk(e.ctx(), "vm1", "disk1"), hypervisor.ErrInvalid, "remove it again")
	e.ok(st.AddDisk(e.ctx(), "vm1", sata), "add a SATA disk while off")
	thick := hypervisor.DiskConfig{Name: "disk3", Path: filepath.Join(cfg.Dir, "disk3.qcow2"), SizeBytes: 8 << 20, Bus: "virtio", Thick: true}
	e.ok(st.AddDisk(e.ctx(), "vm1", thick), "add a thick disk")
	us, err = st.Usage(e.ctx(), "vm1")
	e.ok(err, "usage")
	if names := diskNames(us); len(names) != 3 || names[2] != "disk3" || us[2].AllocatedBytes < 8<<20 {
		t.Fatalf("usage with a thick disk: %+v", us)
	}
	e.ok(e.d.Start(e.ctx(), "vm1"), "start with the new disks")
}

func testCopy(t *testing.T, e *env, st hypervisor.Storage) {
	cfg := e.defineWithDisk("vm1")
	dst := filepath.Join(e.dir, "copy.qcow2")
	// The disk is thin and empty: a copy moves next to nothing of its
	// 64 MiB, and says so (the bytes copied, not the virtual size).
	calls := 0
	var last [2]int64
	report := func(done, total int64) { calls++; last = [2]int64{done, total} }
	checkData := func(what string) {
		t.Helper()
		if calls == 0 {
			t.Errorf("%s reported no progress", what)
		}
		if last[0] != last[1] || last[1] > cfg.Disks[0].SizeBytes/4 {
			t.Errorf("%s of an empty thin disk of %d bytes ended reporting %d of %d bytes: want the data copied", what, cfg.Disks[0].SizeBytes, last[0], last[1])
		}
	}
	e.ok(st.CopyDisk(e.ctx(), hypervisor.DiskCopy{File: cfg.Disks[0].Path, Dst: dst}, report), "copy a disk file")
	checkData("a copy")
	e.ok(e.d.Start(e.ctx(), "vm1"), "start")
	calls = 0
	e.ok(st.CopyDisk(e.ctx(), hypervisor.DiskCopy{VM: "vm1", Disk: "disk0", Dst: filepath.Join(e.dir, "live.qcow2")}, report), "copy a running VM's disk")
	checkData("a live copy")
	e.expect("vm1", hypervisor.StateOn)
	if err := st.CopyDisk(e.ctx(), hypervisor.DiskCopy{File: cfg.Disks[0].Path, Dst: dst}, nil); err == nil {
		t.Errorf("a copy over an existing file succeeded")
	}
}

func testStorageUnknown(t *testing.T, e *env, st hypervisor.Storage) {
	_, err := st.Snapshot(e.ctx(), "nope", hypervisor.SnapshotRequest{Overlays: map[string]string{"disk0": filepath.Join(e.dir, "x.qcow2")}})
	e.is(err, hypervisor.ErrNotFound, "snapshot an unknown VM")
	e.is(st.MergeDisk(e.ctx(), "nope", hypervisor.DiskMerge{Disk: "disk0", Top: "/a", Base: "/b"}), hypervisor.ErrNotFound, "merge on an unknown VM")
	e.is(st.AddDisk(e.ctx(), "nope", hypervisor.DiskConfig{Name: "d", Path: filepath.Join(e.dir, "d.qcow2"), SizeBytes: 1 << 20}), hypervisor.ErrNotFound, "add a disk to an unknown VM")
	_, err = st.Usage(e.ctx(), "nope")
	e.is(err, hypervisor.ErrNotFound, "usage of an unknown VM")
}
