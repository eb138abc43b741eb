package storage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

// cloneWorld adds to the world a second datacenter (cluster cl2, host h2,
// datastore ds2), a datastore local to h1, and host h3 in cl1 reaching
// only its own local datastore loc3.
func cloneWorld(t *testing.T) *world {
	w := newWorld(t)
	dc2 := &api.Datacenter{Metadata: api.ObjectMeta{ID: "id-dc2", Name: "dc2"}}
	cl2 := &api.Cluster{Metadata: api.ObjectMeta{ID: "id-cl2", Name: "cl2"}, Spec: api.ClusterSpec{Datacenter: api.Ref{ID: dc2.Metadata.ID}}}
	ds2 := &api.Datastore{Metadata: api.ObjectMeta{ID: "id-ds2", Name: "ds2"}, Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: dc2.Metadata.ID}, Path: "/ds2", Shared: true}}
	loc1 := &api.Datastore{Metadata: api.ObjectMeta{ID: "id-loc1", Name: "loc1"}, Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Path: "/loc1", Host: api.Ref{ID: w.h1.Metadata.ID}}}
	loc3 := &api.Datastore{Metadata: api.ObjectMeta{ID: "id-loc3", Name: "loc3"}, Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Path: "/loc3", Host: api.Ref{ID: "id-h3"}}}
	w.create(t, dc2, cl2, ds2, loc1, loc3, w.host("h2", cl2, ds2), w.host("h3", w.cl, loc3))
	return w
}

// Clones refused at planning, each with the server's message, and
// nothing written.
func TestClonePlanningRefusals(t *testing.T) {
	w := cloneWorld(t)
	ctx := context.Background()
	v1 := w.vm(t, "v1", func(vm *api.VM) {
		vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = []api.VMSnapshot{w.snap("a", "")}, "id-a"
		vm.Status.Disks = []api.DiskStatus{{Name: "disk0", AllocatedBytes: 2 * gib}}
	})
	w.vm(t, "v2", nil)
	unknown := w.vm(t, "vu", func(vm *api.VM) {
		vm.Status.PowerState, vm.Status.Message = api.PowerUnknown, "host h1 stopped answering"
	})
	creating := w.vm(t, "vc", func(vm *api.VM) { vm.Status.Phase = api.PhaseCreating })
	tmpl := w.vm(t, "vt", func(vm *api.VM) { vm.Spec.Template = true })
	before := len(w.tasks())
	for _, c := range []struct {
		src  *api.VM
		req  api.CloneRequest
		kind error
		msg  string
	}{
		{v1, api.CloneRequest{Name: "v2"}, api.ErrConflict, `clone vm v1: a vm named "v2" already exists`},
		{v1, api.CloneRequest{Name: "c", Linked: true}, api.ErrInvalid,
			"clone vm v1: a linked clone needs frozen disks to link to: give a snapshot of vm v1 (--snapshot), or mark it a template"},
		{v1, api.CloneRequest{Name: "c", Snapshot: "nope"}, api.ErrNotFound, `clone vm v1: vm v1 has no snapshot "nope"`},
		{v1, api.CloneRequest{Name: "c", Host: "nope"}, api.ErrNotFound, `clone vm v1: host "nope" not found`},
		{v1, api.CloneRequest{Name: "c", Host: "h2"}, api.ErrConflict, "clone vm v1: host h2 is in another datacenter"},
		{v1, api.CloneRequest{Name: "c", Datastore: "ds2"}, api.ErrConflict, "clone vm v1: datastore ds2 is in another datacenter"},
		{v1, api.CloneRequest{Name: "c", Host: "h3", Datastore: "loc1"}, api.ErrInvalid, "clone vm v1: datastore loc1 is local to another host"},
		{unknown, api.CloneRequest{Name: "c"}, api.ErrConflict, "clone vm vu: the state of vm vu is unknown: host h1 stopped answering"},
		{creating, api.CloneRequest{Name: "c"}, api.ErrConflict, "clone vm vc: vm vc is still being created"},
		// The linked clone's disks go on loc3, so on h3, which does not
		// reach the template's disks.
		{tmpl, api.CloneRequest{Name: "c", Linked: true, Datastore: "loc3"}, api.ErrConflict,
			"clone vm vt: host h3 does not reach the datastore of vt's disk disk0, which a linked clone reads"},
	} {
		_, err := w.svc.Clone(ctx, c.src, c.req)
		wantErr(t, fmt.Sprintf("clone %s %+v", c.src.Metadata.Name, c.req), err, c.kind, c.msg)
	}
	// A full copy needs room for what the disks hold.
	if err := state.Update(ctx, w.st, nil, w.ds1.Metadata.ID, func(ds *api.Datastore) error {
		ds.Status.CapacityBytes, ds.Status.FreeBytes = 100*gib, gib
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := w.svc.Clone(ctx, v1, api.CloneRequest{Name: "c"})
	wantErr(t, "a full copy", err, api.ErrUnprocessable,
		fmt.Sprintf("clone vm v1: datastore ds1 has %s free; a full copy of the disks of vm v1 needs %s", gib, 2*gib+64<<20))
	_, err = w.svc.Clone(ctx, v1, api.CloneRequest{Name: "c", Host: "h1", CPUs: 64, PowerOn: true, Linked: true, Snapshot: "a"})
	if err == nil || !strings.HasPrefix(err.Error(), "place clone c of vm v1: host h1 has no room for 64 vCPU") {
		t.Errorf("a clone too big for its host: %v", err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(state.List[*api.VM](w.st, nil)); n != 5 {
		t.Errorf("refused clones left %d VMs, want the 5 made here", n)
	}
	if n := len(w.tasks()); n != before {
		t.Errorf("refused clones queued %d tasks", n-before)
	}
}

// A linked clone of a snapshot: the new VM is recorded at once, being
// created, with its own folder, disks linked to the snapshot's files and
// a new MAC; its task defines it on the host and queues its power-on.
func TestLinkedCloneOfASnapshot(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	v1 := w.vm(t, "v1", func(vm *api.VM) {
		vm.Metadata.Labels = map[string]string{"app": "web", "tier": "1"}
		vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = []api.VMSnapshot{w.snap("a", "")}, "id-a"
		vm.Spec.Snapshots[0].CPUs = 2
	})
	tk, err := w.svc.Clone(ctx, v1, api.CloneRequest{Name: "c1", Snapshot: "a", Linked: true, PowerOn: true, Labels: map[string]string{"tier": "2"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c1, ok := state.Lookup[*api.VM](w.st, "c1")
	if !ok {
		t.Fatal("the clone is not recorded with its task")
	}
	d := c1.Spec.Disks[0]
	switch {
	case c1.Status.Phase != api.PhaseCreating || c1.Spec.Host.ID != w.h1.Metadata.ID || c1.Spec.CPUs != 2:
		t.Errorf("clone %+v %+v", c1.Spec, c1.Status)
	case !d.Linked || d.Source != "/ds1/v1/a.qcow2" || d.Path != "c1-"+c1.Metadata.ID[len(c1.Metadata.ID)-8:]+"/disk0.qcow2":
		t.Errorf("clone's disk %+v", d)
	case c1.Spec.NICs[0].MAC == v1.Spec.NICs[0].MAC || !strings.HasPrefix(c1.Spec.NICs[0].MAC, "52:54:00:"):
		t.Errorf("clone's MAC %s, the source's %s", c1.Spec.NICs[0].MAC, v1.Spec.NICs[0].MAC)
	case c1.Metadata.Labels["app"] != "web" || c1.Metadata.Labels["tier"] != "2":
		t.Errorf("clone's labels %v", c1.Metadata.Labels)
	}

	// The power-on the clone queues once its outcome is recorded.
	powerOn := make(chan *api.Task, 1)
	_, cancel := w.st.Cache.Subscribe(func(ch store.Change) {
		if t, ok := ch.Obj.(*api.Task); ok && t.Op == api.OpVMPower(api.ActionStart) && t.Target.ID == c1.Metadata.ID {
			select {
			case powerOn <- t:
			default:
			}
		}
	})
	defer cancel()
	w.start(t)
	w.run(t, tk, nil)
	defs := w.calls("Define")
	if len(defs) != 1 {
		t.Fatalf("defines %v", w.hosts.Methods())
	}
	if cfg := defs[0].Args[0].(hypervisor.VMConfig); len(cfg.Disks) != 1 || !cfg.Disks[0].Linked || cfg.Disks[0].Source != "/ds1/v1/a.qcow2" ||
		cfg.Disks[0].Path != "/ds1/"+d.Path || cfg.NICs[0].MAC != c1.Spec.NICs[0].MAC {
		t.Errorf("defined %+v", cfg)
	}
	if len(w.calls("CopyDisk")) != 0 {
		t.Errorf("a linked clone copied disks: %v", w.hosts.Methods())
	}
	if got, err := w.readVM(c1.Metadata.ID); err != nil || got.Status.Phase != api.PhaseReady {
		t.Fatalf("clone after its task: %+v %v", got, err)
	}
	select {
	case <-powerOn:
	case <-time.After(time.Minute):
		t.Fatal("no power-on queued in a minute")
	}
}

// A clone whose definition fails leaves nothing: the VM record goes.
func TestFailedCloneUndoes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	tmpl := w.vm(t, "vt", func(vm *api.VM) { vm.Spec.Template = true })
	w.hosts.On["Define"] = func(c hoststest.Call) ([]any, error) {
		return nil, api.Errorf(api.ErrUnavailable, "host h1: qemu is missing")
	}
	w.start(t)
	tk, err := w.svc.Clone(ctx, tmpl, api.CloneRequest{Name: "c1", Linked: true})
	if err != nil {
		t.Fatal(err)
	}
	done := w.wait(t, tk.Metadata.ID)
	if done.State != api.TaskFailed || done.Error == nil ||
		done.Error.Message != "clone c1: define the clone on host h1: host h1: qemu is missing; nothing of it is left" {
		t.Fatalf("task %s %+v", done.State, done.Error)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := state.Lookup[*api.VM](w.st, "c1"); ok {
		t.Fatal("the failed clone's VM is still recorded")
	}
	if u := w.calls("Undefine"); len(u) != 1 {
		t.Fatalf("host calls %v", w.hosts.Methods())
	}
}
