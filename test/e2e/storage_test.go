package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// The test guest has no file system on its disks: data is written to and
// read from /dev/vda blocks by dd through the guest agent, and the page
// cache is dropped before each read so that what is read comes from the
// disk.

// writeBlock writes a marker into 4 KiB block n of the guest's first disk
// and flushes it (fsync: the disk's write cache too, as a database or a
// journaling file system does). A write the guest never flushed may be
// lost when QEMU dies, as on a real disk losing power.
func (cl *cluster) writeBlock(vm string, n int, data string) {
	cl.t.Helper()
	cl.vdc("vm", "exec", vm, "--", "/bin/sh", "-c",
		fmt.Sprintf("printf '%%-64s' %q | dd of=/dev/vda bs=4096 seek=%d conv=notrunc,fsync 2>/dev/null", data, n))
}

// readBlock reads the marker in block n ("" for a block never written).
func (cl *cluster) readBlock(vm string, n int) string {
	cl.t.Helper()
	out := cl.vdc("vm", "exec", vm, "--", "/bin/sh", "-c",
		fmt.Sprintf("sync; echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=4096 skip=%d count=1 2>/dev/null | head -c 64 | tr -d '\\000'", n))
	return strings.TrimSpace(out)
}

// expectBlocks checks the markers of a guest's blocks.
func (cl *cluster) expectBlocks(vm, when string, want map[int]string) {
	cl.t.Helper()
	for n, w := range want {
		if got := cl.readBlock(vm, n); got != w {
			cl.t.Fatalf("%s: vm %s block %d holds %q, want %q", when, vm, n, got, w)
		}
	}
}

func snapshotNames(cl *cluster, vm string) []string {
	var snaps []api.VMSnapshot
	cl.json(&snaps, "vm", "snapshot", "ls", vm)
	byID := map[string]string{}
	for _, s := range snaps {
		byID[s.ID] = s.Name
	}
	var names []string
	for _, s := range snaps {
		names = append(names, s.Name+"<"+byID[s.ParentID])
	}
	return names
}

// Snapshots of a running VM keep exactly the data of their moment: write,
// snapshot, write more, revert, and the first data is there; deleting
// snapshots in different orders (merging live) loses nothing; linked
// clones of snapshots see the snapshot's data and diverge on their own.
func TestSnapshotsKeepData(t *testing.T) {
	cl := newQEMUCluster(t)
	cl.vdc("vm", "create", "s1", "--memory", "256MiB", "--image", "test", "--disk", "64MiB", "--host", "host-1", "--no-nic", "--start")
	cl.waitGuestUp("s1")

	cl.writeBlock("s1", 1, "A1")
	out := cl.vdc("vm", "snapshot", "create", "s1", "snap1", "--quiesce")
	if !strings.Contains(out, "snapshot snap1 of vm s1 taken (file systems frozen)") {
		t.Fatalf("snapshot create: %s", out)
	}
	cl.writeBlock("s1", 1, "B1")
	cl.writeBlock("s1", 2, "B2")
	cl.vdc("vm", "snapshot", "create", "s1", "snap2", "--memory")
	cl.writeBlock("s1", 1, "C1")
	cl.expectBlocks("s1", "after two snapshots", map[int]string{1: "C1", 2: "B2"})
	if tree := cl.vdc("vm", "snapshot", "ls", "s1"); !strings.Contains(tree, "snap2 (memory, on") || !strings.Contains(tree, "you are here") {
		t.Fatalf("snapshot tree:\n%s", tree)
	}

	// A memory snapshot brings the VM back running where it was.
	cl.vdc("vm", "snapshot", "revert", "s1", "snap2")
	if vm := cl.vm("s1"); vm.Status.PowerState != api.PowerOn {
		t.Fatalf("after reverting to a memory snapshot the VM is %s (%s)", vm.Status.PowerState, vm.Status.Message)
	}
	cl.waitGuestUp("s1")
	cl.expectBlocks("s1", "after revert to snap2", map[int]string{1: "B1", 2: "B2"})

	// One without memory leaves it off; started, it has the old data.
	cl.vdc("vm", "snapshot", "revert", "s1", "snap1")
	if vm := cl.vm("s1"); vm.Status.PowerState != api.PowerOff {
		t.Fatalf("after reverting to a disk-only snapshot the VM is %s", vm.Status.PowerState)
	}
	cl.vdc("vm", "start", "s1")
	cl.waitGuestUp("s1")
	cl.expectBlocks("s1", "after revert to snap1", map[int]string{1: "A1", 2: ""})
	cl.writeBlock("s1", 3, "D3")

	// snap1 now has two branches on it (snap2, and the current state): it
	// is hidden and its data kept; deleting snap2 then merges it away live.
	out = cl.vdc("vm", "snapshot", "rm", "s1", "snap1")
	if !strings.Contains(out, "stays until") {
		t.Fatalf("deleting a snapshot with two branches: %s", out)
	}
	cl.vdc("vm", "snapshot", "rm", "s1", "snap2")
	cl.expectBlocks("s1", "after deleting both snapshots", map[int]string{1: "A1", 2: "", 3: "D3"})
	vm := cl.vm("s1")
	if len(vm.Spec.Snapshots) != 0 || !strings.HasSuffix(vm.Spec.Disks[0].Path, "/disk0.qcow2") {
		t.Fatalf("after deleting every snapshot: snapshots %v, disk %s", vm.Spec.Snapshots, vm.Spec.Disks[0].Path)
	}

	// A linear chain, deleted middle first, then first, then last.
	for i, s := range []string{"a", "b", "c"} {
		cl.writeBlock("s1", 10+i, "chain-"+s)
		cl.vdc("vm", "snapshot", "create", "s1", s)
	}
	cl.writeBlock("s1", 13, "after-c")
	cl.vdc("vm", "snapshot", "rm", "s1", "b")
	if got := snapshotNames(cl, "s1"); strings.Join(got, " ") != "a< c<a" {
		t.Fatalf("tree after deleting b: %v", got)
	}
	// Snapshot c still holds its moment: a linked clone of it shows it.
	cl.vdc("vm", "clone", "s1", "c-view", "--snapshot", "c", "--linked", "--host", "host-2")
	cl.vdc("vm", "start", "c-view")
	cl.waitGuestUp("c-view")
	cl.expectBlocks("c-view", "linked clone of snapshot c", map[int]string{10: "chain-a", 11: "chain-b", 12: "chain-c", 13: "", 3: "D3"})
	cl.writeBlock("c-view", 10, "clone-own")
	cl.expectBlocks("s1", "source after the clone wrote", map[int]string{10: "chain-a"})
	// The clone depends on c: c cannot go, and the error names it.
	if out, err := cl.try("vm", "snapshot", "rm", "s1", "c"); err == nil || !strings.Contains(out, "c-view") {
		t.Fatalf("deleting a snapshot a linked clone uses: %v %s", err, out)
	}
	cl.vdc("vm", "delete", "c-view", "--force")

	cl.vdc("vm", "snapshot", "rm", "s1", "a")
	cl.vdc("vm", "snapshot", "rm", "s1", "c")
	cl.expectBlocks("s1", "after deleting the chain", map[int]string{1: "A1", 3: "D3", 10: "chain-a", 11: "chain-b", 12: "chain-c", 13: "after-c"})
	if vm := cl.vm("s1"); len(vm.Spec.Snapshots) != 0 || !strings.HasSuffix(vm.Spec.Disks[0].Path, "/disk0.qcow2") {
		t.Fatalf("after deleting the chain: snapshots %v, disk %s", vm.Spec.Snapshots, vm.Spec.Disks[0].Path)
	}
	// Snapshots of a VM that is off work the same way.
	cl.vdc("vm", "stop", "s1", "--force")
	cl.vdc("vm", "snapshot", "create", "s1", "cold")
	cl.vdc("vm", "start", "s1")
	cl.waitGuestUp("s1")
	cl.writeBlock("s1", 1, "after-cold")
	cl.vdc("vm", "snapshot", "rm", "s1", "cold")
	cl.expectBlocks("s1", "after deleting a cold snapshot live", map[int]string{1: "after-cold", 3: "D3"})
}

// waitGuestUp waits for the guest agent (the VMs here have no NIC).
func (cl *cluster) waitGuestUp(vm string) {
	eventually(cl.t, 3*time.Minute, "the guest agent of "+vm+" to answer", func() bool {
		got := cl.vm(vm)
		return got.Status.Guest != nil && got.Status.Guest.State == api.GuestRunning
	})
}

// Clones and templates: a full clone of a running VM is its data at that
// moment with new MACs and a new identity; a template cannot run or be
// deleted while linked clones use it, and the error names them; disks are
// added, grown and removed while the VM runs; thick disks are allocated.
func TestClonesTemplatesAndDisks(t *testing.T) {
	cl := newQEMUCluster(t)
	cl.vdc("vm", "create", "src", "--memory", "256MiB", "--image", "test", "--disk", "64MiB", "--host", "host-1", "--start")
	cl.waitGuestUp("src")
	cl.writeBlock("src", 1, "source-data")

	// A full clone of the running VM, on the other host.
	out := cl.vdc("vm", "clone", "src", "full1", "--host", "host-2")
	if !strings.Contains(out, "full clone") || !strings.Contains(out, "host-2") {
		t.Fatalf("clone: %s", out)
	}
	// The thin 64 MiB disk holds a few blocks: that is what was copied.
	if !strings.Contains(out, " copied") || strings.Contains(out, "64 MiB copied") {
		t.Errorf("a full clone of a nearly empty thin disk says: %s", out)
	}
	cl.writeBlock("src", 1, "after-clone")
	src, full := cl.vm("src"), cl.vm("full1")
	if full.Spec.NICs[0].MAC == src.Spec.NICs[0].MAC || full.Metadata.ID == src.Metadata.ID {
		t.Fatalf("a clone needs its own MAC and identity: %s %s", full.Spec.NICs[0].MAC, src.Spec.NICs[0].MAC)
	}
	if full.Spec.Disks[0].Linked || full.Spec.Disks[0].Source != "" {
		t.Fatalf("a full clone must not depend on its source: %+v", full.Spec.Disks[0])
	}
	cl.vdc("vm", "start", "full1")
	cl.waitGuestUp("full1")
	cl.expectBlocks("full1", "full clone", map[int]string{1: "source-data"})
	cl.writeBlock("full1", 2, "clone-only")
	cl.expectBlocks("src", "source after the clone wrote", map[int]string{1: "after-clone", 2: ""})

	// Disks: hot-plug a thin and a thick one, grow one live, remove one.
	cl.vdc("vm", "disk", "add", "src", "--size", "32MiB")
	cl.vdc("vm", "disk", "add", "src", "--size", "16MiB", "--thick")
	eventually(t, time.Minute, "the guest to see two new disks", func() bool {
		out, err := cl.try("vm", "exec", "src", "--", "/bin/sh", "-c", "cat /sys/block/vdb/size /sys/block/vdc/size")
		return err == nil && strings.Contains(out, "65536") && strings.Contains(out, "32768")
	})
	cl.vdc("vm", "disk", "resize", "src", "disk1", "--size", "48MiB")
	eventually(t, time.Minute, "the guest to see disk1 grown", func() bool {
		out, err := cl.try("vm", "exec", "src", "--", "/bin/cat", "/sys/block/vdb/size")
		return err == nil && strings.TrimSpace(out) == "98304"
	})
	if out, err := cl.try("vm", "disk", "resize", "src", "disk1", "--size", "16MiB"); err == nil || !strings.Contains(out, "only grow") {
		t.Fatalf("shrinking a disk: %v %s", err, out)
	}
	// Hot-plugged disks keep their slots: the VM moves live with them.
	cl.writeBlock("src", 3, "before-move")
	cl.vdc("vm", "migrate", "src", "--host", "host-2")
	if out := cl.vdc("vm", "exec", "src", "--", "/bin/cat", "/sys/block/vdb/size", "/sys/block/vdc/size"); !strings.Contains(out, "98304") || !strings.Contains(out, "32768") {
		t.Fatalf("after a live migration the guest sees:\n%s", out)
	}
	cl.expectBlocks("src", "after a live migration", map[int]string{1: "after-clone", 3: "before-move"})
	var vm *api.VM
	eventually(t, time.Minute, "the hosts to measure the disks", func() bool {
		vm = cl.vm("src")
		return len(vm.Status.Disks) == 3
	})
	for _, d := range vm.Status.Disks {
		if d.Name == "disk2" && d.AllocatedBytes < api.MustSize("16MiB") {
			t.Fatalf("a thick 16 MiB disk takes %s", d.AllocatedBytes)
		}
		if d.Name == "disk1" && d.AllocatedBytes > api.MustSize("4MiB") {
			t.Fatalf("a fresh thin disk takes %s", d.AllocatedBytes)
		}
	}
	if st := vm.Status.Storage; st == nil || st.CapacityBytes != api.MustSize("128MiB") || st.AllocatedBytes < api.MustSize("16MiB") {
		t.Fatalf("vm storage: %+v", st)
	}
	cl.vdc("vm", "disk", "rm", "src", "disk2")
	eventually(t, time.Minute, "the guest to lose vdc", func() bool {
		out, err := cl.try("vm", "exec", "src", "--", "/bin/ls", "/sys/block")
		return err == nil && !strings.Contains(out, "vdc")
	})
	if out, err := cl.try("vm", "disk", "rm", "src", "disk9"); err == nil || !strings.Contains(out, "no disk") {
		t.Fatalf("removing an unknown disk: %v %s", err, out)
	}

	// Templates.
	cl.vdc("vm", "stop", "src", "--force")
	cl.vdc("vm", "mark-template", "src")
	if out, err := cl.try("vm", "start", "src"); err == nil || !strings.Contains(out, "template") {
		t.Fatalf("starting a template: %v %s", err, out)
	}
	if ls := cl.vdc("template", "ls"); !strings.Contains(ls, "src") {
		t.Fatalf("template ls:\n%s", ls)
	}
	out = cl.vdc("vm", "create", "web1", "--from-template", "src", "--linked", "--start")
	if !strings.Contains(out, "vm web1 created (linked clone)") {
		t.Fatalf("create from template: %s", out)
	}
	cl.waitGuestUp("web1")
	cl.expectBlocks("web1", "linked clone of the template", map[int]string{1: "after-clone"})
	if out, err := cl.try("vm", "delete", "src"); err == nil || !strings.Contains(out, "web1") {
		t.Fatalf("deleting a template a linked clone uses: %v %s", err, out)
	}
	cl.vdc("vm", "delete", "web1", "--force")
	cl.vdc("vm", "delete", "src")

	var dss []*api.Datastore
	cl.json(&dss, "datastore", "ls")
	if len(dss) != 1 || dss[0].Status.CapacityBytes == 0 || dss[0].Status.OvercommitRatio <= 0 {
		t.Fatalf("datastore accounting: %+v", dss[0].Status)
	}
}
