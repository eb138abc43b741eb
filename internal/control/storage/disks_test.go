package storage_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

type diskAdd struct {
	Disk api.VMDisk `json:"disk"`
}

// A new disk gets a name the VM never had (its snapshots keep removed
// disks' names) and no unfinished add claimed, and a hot-plug slot no
// disk of it, its snapshots' or an unfinished add's holds; with none
// left, the add is refused.
func TestDiskAddPicksNextNameAndSlot(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	vm := w.vm(t, "v1", func(vm *api.VM) {
		vm.Status.PowerState = api.PowerOn
		a := w.snap("a", "")
		old := w.disk("disk1", "disk1") // removed since the snapshot
		old.Slot = "hp0"
		a.Disks = append(a.Disks, old)
		vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = []api.VMSnapshot{a}, "id-a"
	})
	var got []string
	for _, bus := range []string{api.BusVirtio, api.BusVirtio, api.BusSCSI, api.BusVirtio} {
		// Each add's task stays queued (no runner), holding its claims.
		tk, err := w.svc.AddDisk(ctx, w.cached(t, vm.Metadata.ID), api.DiskAddRequest{Size: gib, Bus: bus})
		if err != nil {
			t.Fatalf("add a %s disk: %v", bus, err)
		}
		d := params[diskAdd](t, tk).Disk
		got = append(got, fmt.Sprintf("%s:%s:%s@%s", d.Name, d.Bus, d.Slot, d.Path))
	}
	want := "[disk2:virtio:hp1@v1/disk2.qcow2 disk3:virtio:hp2@v1/disk3.qcow2 disk4:scsi:@v1/disk4.qcow2 disk5:virtio:hp3@v1/disk5.qcow2]"
	if fmt.Sprint(got) != want {
		t.Fatalf("disks added\n  %v\nwant\n  %s", got, want)
	}
	_, err := w.svc.AddDisk(ctx, w.cached(t, vm.Metadata.ID), api.DiskAddRequest{Size: gib, Bus: api.BusVirtio})
	wantErr(t, "a fifth hot-plugged disk", err, api.ErrConflict,
		"vm v1 has no free hot-plug slot (4 virtio disks and NICs were added while it ran, or are being added); stop it to add more")
	// Off, a VM needs no slot.
	off := w.vm(t, "v2", nil)
	tk, err := w.svc.AddDisk(ctx, off, api.DiskAddRequest{Size: gib, Bus: api.BusVirtio})
	if err != nil {
		t.Fatal(err)
	}
	if d := params[diskAdd](t, tk).Disk; d.Name != "disk1" || d.Slot != "" {
		t.Fatalf("disk of a VM that is off: %+v", d)
	}
}

// A disk add the host fails changes nothing: the VM keeps its disks, and
// the name is free again for the next add, which goes through.
func TestFailedDiskAddUndoes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	vm := w.vm(t, "v1", nil)
	var fail atomic.Bool
	fail.Store(true)
	w.hosts.On["AddDisk"] = func(c hoststest.Call) ([]any, error) {
		if fail.Load() {
			return nil, api.Errorf(api.ErrUnprocessable, "no space left on /ds1")
		}
		return nil, nil
	}
	w.start(t)
	tk, err := w.svc.AddDisk(ctx, vm, api.DiskAddRequest{Size: gib, Bus: api.BusVirtio})
	if err != nil {
		t.Fatal(err)
	}
	done := w.wait(t, tk.Metadata.ID)
	if done.State != api.TaskFailed || done.Error == nil || done.Error.Message != "add disk disk1 to vm v1: no space left on /ds1" {
		t.Fatalf("task %s %+v", done.State, done.Error)
	}
	got, err := w.readVM(vm.Metadata.ID)
	if err != nil || len(got.Spec.Disks) != 1 {
		t.Fatalf("vm after a failed add: %+v %v", got.Spec.Disks, err)
	}
	fail.Store(false)
	tk, err = w.addDisk(t, ctx, vm.Metadata.ID)
	w.run(t, tk, err)
	if got, err = w.readVM(vm.Metadata.ID); err != nil || len(got.Spec.Disks) != 2 || got.Spec.Disks[1].Name != "disk1" {
		t.Fatalf("vm after the next add: %+v %v", got.Spec.Disks, err)
	}
	adds := w.calls("AddDisk")
	if len(adds) != 2 {
		t.Fatalf("host calls %v", w.hosts.Methods())
	}
	for _, c := range adds {
		if d := c.Args[1].(hypervisor.DiskConfig); d.Name != "disk1" || d.Path != "/ds1/v1/disk1.qcow2" || d.SizeBytes != int64(gib) {
			t.Errorf("host asked to add %+v", d)
		}
	}
}

// addDisk adds a 1 GiB virtio disk to the VM as the cache has it now.
func (w *world) addDisk(t *testing.T, ctx context.Context, id string) (*api.Task, error) {
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return w.svc.AddDisk(ctx, w.cached(t, id), api.DiskAddRequest{Size: gib, Bus: api.BusVirtio})
}
