package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
)

// concurrently runs n copies of call at once (released together) and
// returns their tasks and errors, in no particular order.
func concurrently(n int, call func() (*api.Task, error)) ([]*api.Task, []error) {
	var (
		mu    sync.Mutex
		tasks []*api.Task
		errs  []error
		wg    sync.WaitGroup
	)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			t, err := call()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			} else {
				tasks = append(tasks, t)
			}
		}()
	}
	close(start)
	wg.Wait()
	return tasks, errs
}

// oneWins checks that exactly one of n racing requests was accepted, that
// its task succeeded, and that every other got a 409 saying what.
func oneWins(t *testing.T, d *dc, tasks []*api.Task, errs []error, n int, says string) {
	t.Helper()
	if len(tasks) != 1 || len(errs) != n-1 {
		t.Fatalf("%d of %d racing requests were accepted, want 1 (errors: %v)", len(tasks), n, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), says) {
			t.Errorf("a losing request: %v, want a 409 saying %q", err, says)
		}
	}
	d.run(tasks[0], nil)
}

// Racing snapshot creates with one name at one VM: one is taken, the
// others are refused at once, and the tree stays a tree.
func TestConcurrentSnapshotCreatesOneName(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "race-vm", CPUs: 1, Memory: api.MustSize("512MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}, PowerOn: true}))
	const n = 8
	tasks, errs := concurrently(n, func() (*api.Task, error) {
		return d.c.CreateSnapshot(ctx, "race-vm", api.SnapshotCreateRequest{Name: "snap-race"})
	})
	oneWins(t, d, tasks, errs, n, `snapshot named "snap-race"`)
	snaps, err := d.c.Snapshots(ctx, "race-vm")
	if err != nil || len(snaps) != 1 || snaps[0].Name != "snap-race" || snaps[0].ParentID != "" || snaps[0].ID == "" {
		t.Fatalf("snapshots after the race: %+v (%v)", snaps, err)
	}
	if vm := d.vm("race-vm"); vm.Spec.CurrentSnapshotID != snaps[0].ID {
		t.Fatalf("current snapshot %q, want %q", vm.Spec.CurrentSnapshotID, snaps[0].ID)
	}
	ls := cli.NewRoot()
	ls.SetArgs([]string{"--config", d.srv.ClientConfigPath(), "vm", "snapshot", "ls", "race-vm"})
	if err := ls.ExecuteContext(ctx); err != nil {
		t.Fatalf("vdc vm snapshot ls race-vm: %v", err)
	}
	// The name is free again once its snapshot is deleted.
	d.run(d.c.DeleteSnapshot(ctx, "race-vm", "snap-race"))
	d.run(d.c.CreateSnapshot(ctx, "race-vm", api.SnapshotCreateRequest{Name: "snap-race"}))
	if snaps, err := d.c.Snapshots(ctx, "race-vm"); err != nil || len(snaps) != 1 {
		t.Fatalf("snapshots after delete and create: %+v (%v)", snaps, err)
	}
}

// A snapshot create that ends without a snapshot (canceled while queued)
// lets its name go.
func TestCanceledSnapshotCreateFreesItsName(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("512MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}, PowerOn: true, Labels: map[string]string{sim.LabelIgnoreACPI: "true"}}))
	// A stop that waits for a guest that ignores it keeps the VM's queue
	// busy: the snapshot create waits behind it, and is canceled there.
	stop, err := d.c.Power(ctx, "v1", api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: 3})
	if err != nil {
		t.Fatal(err)
	}
	held, err := d.c.CreateSnapshot(ctx, "v1", api.SnapshotCreateRequest{Name: "held"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.c.Do(ctx, client.Request{Method: "POST", Path: "/tasks/" + held.Metadata.ID + "/cancel"}, nil); err != nil {
		t.Fatalf("cancel the queued snapshot: %v", err)
	}
	d.run(stop, nil)
	if tk, err := d.c.Wait(ctx, held); err == nil || tk.State != api.TaskCanceled {
		t.Fatalf("the canceled snapshot task ended %s (%v)", tk.State, err)
	}
	d.run(d.c.CreateSnapshot(ctx, "v1", api.SnapshotCreateRequest{Name: "held"}))
	if snaps, err := d.c.Snapshots(ctx, "v1"); err != nil || names(snaps) != "held<" {
		t.Fatalf("snapshots: %s (%v)", names(snaps), err)
	}
}

// Racing disk adds at one VM each get a disk of their own: a name the VM
// never had, and on a running VM a hot-plug slot of its own; past the
// free slots, they are refused at once.
func TestConcurrentDiskAdds(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("512MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}, PowerOn: true}))
	const slots = 4 // the hot-plug root ports a VM has
	tasks, errs := concurrently(slots+2, func() (*api.Task, error) {
		return d.c.AddDisk(ctx, "v1", api.DiskAddRequest{Size: api.MustSize("1GiB")})
	})
	if len(tasks) != slots || len(errs) != 2 {
		t.Fatalf("%d of %d racing hot adds accepted, want %d (errors: %v)", len(tasks), slots+2, slots, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "no free hot-plug slot") {
			t.Errorf("a hot add past the slots: %v", err)
		}
	}
	for _, tk := range tasks {
		d.run(tk, nil)
	}
	vm := d.vm("v1")
	names, used := map[string]bool{}, map[string]bool{}
	for _, dk := range vm.Spec.Disks {
		if names[dk.Name] || (dk.Slot != "" && used[dk.Slot]) {
			t.Fatalf("two disks share a name or a slot: %+v", vm.Spec.Disks)
		}
		names[dk.Name], used[dk.Slot] = true, dk.Slot != ""
	}
	if len(vm.Spec.Disks) != 1+slots {
		t.Fatalf("vm has %d disks after %d accepted adds: %+v", len(vm.Spec.Disks), slots, vm.Spec.Disks)
	}
	// Off, with no slots to share, all of them go through.
	d.run(d.c.Power(ctx, "v1", api.PowerRequest{Action: api.ActionStop, Force: true}))
	tasks, errs = concurrently(6, func() (*api.Task, error) {
		return d.c.AddDisk(ctx, "v1", api.DiskAddRequest{Size: api.MustSize("1GiB")})
	})
	if len(errs) != 0 {
		t.Fatalf("racing adds to a VM that is off: %v", errs)
	}
	for _, tk := range tasks {
		d.run(tk, nil)
	}
	vm = d.vm("v1")
	names = map[string]bool{}
	for _, dk := range vm.Spec.Disks {
		names[dk.Name] = true
	}
	if len(vm.Spec.Disks) != 1+slots+6 || len(names) != len(vm.Spec.Disks) {
		t.Fatalf("after 6 racing adds while off: %+v", vm.Spec.Disks)
	}
}

// uploadDisk stages a small raw disk for an import.
func uploadDisk(t *testing.T, d *dc) string {
	t.Helper()
	ctx := context.Background()
	up, err := d.c.CreateUpload(ctx, api.UploadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("data"), 1<<16) // 256 KiB raw
	if _, err := d.c.UploadFile(ctx, up.ID, "data.img", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return up.ID
}

// Racing imports that would make VMs of one name: one is accepted, the
// others are refused at once (not after their disks were converted), and
// no other request takes the name while the import runs.
func TestConcurrentImportsOfOneName(t *testing.T) {
	needQemuImg(t)
	d := newDC(t, 1)
	ctx := context.Background()
	const n = 4
	ups := make(chan string, n)
	for i := 0; i < n; i++ {
		ups <- uploadDisk(t, d)
	}
	tasks, errs := concurrently(n, func() (*api.Task, error) {
		t, _, err := d.c.Import(ctx, api.ImportRequest{Format: api.ImportFormatDisk, Upload: <-ups, Name: "imp"})
		return t, err
	})
	if len(tasks) != 1 || len(errs) != n-1 {
		t.Fatalf("%d of %d racing imports were accepted, want 1 (errors: %v)", len(tasks), n, errs)
	}
	for _, err := range errs {
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), `vm named "imp"`) {
			t.Errorf("a losing import: %v", err)
		}
	}
	// Being imported or made by now, the name is taken either way.
	_, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: "imp", CPUs: 1, Memory: api.MustSize("128MiB")})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), `vm named "imp"`) {
		t.Errorf("a create of the name an import takes: %v", err)
	}
	d.run(tasks[0], nil)
	if vm := d.vm("imp"); len(vm.Spec.Disks) != 1 {
		t.Fatalf("imported vm: %+v", vm.Spec)
	}
	if n := vmCount(t, d); n != 1 {
		t.Fatalf("%d VMs after the race, want 1", n)
	}
}

// Racing disk imports and disk adds at one VM each add a disk of its own
// name.
func TestConcurrentDiskImportsIntoOneVM(t *testing.T) {
	needQemuImg(t)
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "db1", CPUs: 1, Memory: api.MustSize("128MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("16MiB")}}}))
	const n = 3
	ups := make(chan string, n)
	for i := 0; i < n; i++ {
		ups <- uploadDisk(t, d)
	}
	var calls atomic.Int32
	tasks, errs := concurrently(2*n, func() (*api.Task, error) {
		if calls.Add(1)%2 == 0 {
			return d.c.AddDisk(ctx, "db1", api.DiskAddRequest{Size: api.MustSize("1GiB")})
		}
		t, _, err := d.c.Import(ctx, api.ImportRequest{Format: api.ImportFormatDisk, Upload: <-ups, VM: "db1"})
		return t, err
	})
	if len(errs) != 0 {
		t.Fatalf("racing disk imports and adds: %v", errs)
	}
	disks := map[string]bool{}
	for _, tk := range tasks {
		done := d.run(tk, nil)
		if done.Op == "vm.import" {
			var res api.ImportResult
			json.Unmarshal(done.Result, &res)
			disks[res.Disk] = true
		}
	}
	vm := d.vm("db1")
	names := map[string]bool{}
	for _, dk := range vm.Spec.Disks {
		names[dk.Name] = true
	}
	if len(vm.Spec.Disks) != 1+2*n || len(names) != len(vm.Spec.Disks) {
		t.Fatalf("after %d racing adds: %+v", 2*n, vm.Spec.Disks)
	}
	for name := range disks {
		if !names[name] {
			t.Errorf("an import says it added %s, which vm db1 does not have: %+v", name, vm.Spec.Disks)
		}
	}
	if len(disks) != n {
		t.Errorf("the imports say they added %v", disks)
	}
}

// VMs made in the request (create, clone, from a template) take their
// name in the request's transaction: of racing ones, one is accepted.
func TestConcurrentCreatesOfOneVMName(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "tmpl", CPUs: 1, Memory: api.MustSize("128MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	d.run(d.c.MarkTemplate(ctx, "tmpl", true))
	var calls atomic.Int32
	const n = 6
	tasks, errs := concurrently(n, func() (*api.Task, error) {
		switch calls.Add(1) % 3 {
		case 0:
			return d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("128MiB")})
		case 1:
			return d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", FromTemplate: "tmpl", Linked: true})
		}
		return d.c.Clone(ctx, "tmpl", api.CloneRequest{Name: "web1", Linked: true})
	})
	oneWins(t, d, tasks, errs, n, `vm named "web1"`)
	if got := vmCount(t, d); got != 2 {
		t.Fatalf("%d VMs, want the template and one web1", got)
	}
}
