package migration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a datacenter of one cluster with two hosts, h1 and h2, that
// both reach datastore ds1 (h1 alone reaches ds2, h2 alone ds3), and a
// running VM vm1 on h1 with its disk on ds1; the hosts are a fake.
type fixture struct {
	st    *state.State
	fake  *hoststest.Fake
	svc   *Service
	ids   map[string]string // object name → ID
	start func()            // starts the task runner
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	fake := hoststest.New()
	sub := &tasks.Submitter{State: st}
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: fake, Tasks: sub}
	f := &fixture{st: st, fake: fake, ids: map[string]string{}}
	f.svc = New(Deps{State: st, Inventory: inv, Hosts: fake, Placer: placement.New(st, tally), Tasks: sub, Log: quiet,
		StallTimeout: 30 * time.Second})
	cl := &api.Cluster{Metadata: f.meta("c1"), Spec: api.ClusterSpec{Datacenter: api.Ref{ID: "dc1"}, CPUOvercommit: 1, MemoryOvercommit: 1}}
	objs := []api.Object{cl}
	for _, ds := range []string{"ds1", "ds2", "ds3"} {
		objs = append(objs, &api.Datastore{Metadata: f.meta(ds), Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: "dc1"}, Path: "/" + ds, Shared: true}})
	}
	for name, reach := range map[string][]string{"h1": {"ds1", "ds2"}, "h2": {"ds1", "ds3"}} {
		h := &api.Host{Metadata: f.meta(name), Spec: api.HostSpec{Cluster: f.ref("c1")},
			Status: api.HostStatus{Connection: api.HostConnected, Address: name + ":7444", Driver: "qemu", Accel: "kvm", Hypervisor: "QEMU 9.2",
				CPUs: 8, MemoryBytes: 16 << 30}}
		for _, ds := range reach {
			h.Status.Datastores = append(h.Status.Datastores, f.ref(ds))
		}
		objs = append(objs, h)
	}
	objs = append(objs, &api.VM{Metadata: f.meta("vm1"), Spec: api.VMSpec{Cluster: f.ref("c1"), Host: f.ref("h1"), CPUs: 2, MemoryBytes: 1 << 30,
		Disks: []api.VMDisk{{Name: "disk0", SizeBytes: 10 << 30, Datastore: f.ref("ds1"), Bus: "virtio", Path: "vm1/disk0.qcow2"}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOn}})
	ctx := context.Background()
	for _, o := range objs {
		if _, err := st.Store.Create(ctx, o); err != nil {
			t.Fatalf("create %s %s: %v", o.Kind(), o.GetMeta().Name, err)
		}
	}
	f.sync(t)
	f.start = func() {
		r := tasks.NewRunner(st, st.Store.Txn, "test", quiet)
		f.svc.Register(r)
		rctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(func() { cancel(); r.Wait() })
		r.Start(rctx)
	}
	return f
}

func (f *fixture) meta(name string) api.ObjectMeta {
	f.ids[name] = store.NewID()
	return api.ObjectMeta{ID: f.ids[name], Name: name}
}

func (f *fixture) ref(name string) api.Ref { return api.Ref{ID: f.ids[name], Name: name} }

// sync waits for the cache to show every write so far.
func (f *fixture) sync(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.st.Cache.Sync(ctx); err != nil {
		t.Fatalf("sync the cache: %v", err)
	}
}

func (f *fixture) vm(t *testing.T) *api.VM {
	t.Helper()
	vm, err := state.Read[*api.VM](context.Background(), f.st, f.ids["vm1"])
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

func (f *fixture) host(t *testing.T, name string) *api.Host {
	t.Helper()
	h, ok := state.Get[*api.Host](f.st, f.ids[name])
	if !ok {
		t.Fatalf("no host %s", name)
	}
	return h
}

// change changes an object in the store for the rest of the (sub)test.
func change[T api.Object](t *testing.T, f *fixture, name string, fn func(T)) {
	t.Helper()
	ctx := context.Background()
	old, err := state.Read[T](ctx, f.st, f.ids[name])
	if err != nil {
		t.Fatal(err)
	}
	set := func(fn func(T)) {
		if err := state.Update(ctx, f.st, nil, f.ids[name], func(o T) error { fn(o); return nil }); err != nil {
			t.Fatalf("change %s: %v", name, err)
		}
		f.sync(t)
	}
	set(fn)
	t.Cleanup(func() {
		set(func(o T) {
			// Back to what it was, keeping the store's bookkeeping.
			meta := *o.GetMeta()
			restore(o, old)
			*o.GetMeta() = meta
		})
	})
}

func restore(dst, src api.Object) {
	switch d := dst.(type) {
	case *api.Host:
		*d = *src.(*api.Host)
	case *api.VM:
		*d = *src.(*api.VM)
	case *api.Datastore:
		*d = *src.(*api.Datastore)
	}
}

// migrate asks for a migration and waits for its task to end.
func (f *fixture) migrate(t *testing.T, req api.MigrateRequest) *api.Task {
	t.Helper()
	vm := f.vm(t)
	tk, err := f.svc.Migrate(context.Background(), vm, f.host(t, vm.Spec.Host.Name), req)
	if err != nil {
		t.Fatalf("migrate %+v: %v", req, err)
	}
	return f.wait(t, tk.Metadata.ID)
}

func (f *fixture) wait(t *testing.T, id string) *api.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for {
		if tk, ok := state.Get[*api.Task](f.st, id); ok {
			if api.TaskDone(tk.State) {
				return tk
			}
			rev = tk.Metadata.Revision
		}
		if _, err := f.st.Cache.WaitChange(ctx, api.KindTask, id, rev); err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
	}
}

// calls lists the calls to the hosts as "Method host".
func (f *fixture) calls() []string {
	var out []string
	for _, c := range f.fake.Calls() {
		out = append(out, c.Method+" "+c.Host)
	}
	return out
}

// answerLive makes the fake hosts answer a live migration: the source
// reports status when asked of the VM, the target takes the copy.
func (f *fixture) answerLive(status func() hypervisor.MigrationStatus) {
	f.fake.On["VM"] = func(c hoststest.Call) ([]any, error) {
		if c.Host == "h1" {
			return []any{agent.VMInfo{AgentVMState: api.AgentVMState{ID: c.VM, PowerState: api.PowerOn}, Migration: status()}}, nil
		}
		return []any{agent.VMInfo{Incoming: true}}, nil
	}
	f.fake.On["Incoming"] = func(hoststest.Call) ([]any, error) {
		return []any{hypervisor.Incoming{URI: "tcp:h2:49152"}}, nil
	}
	f.fake.On["FinishIncoming"] = func(c hoststest.Call) ([]any, error) {
		return []any{api.AgentVMState{ID: c.VM, PowerState: api.PowerOn, Seq: 7}}, nil
	}
}

// Each refusal of a plan says why in the server's words, queues no task,
// calls no host and leaves the VM where it is.
func TestPlanningRefusals(t *testing.T) {
	f := newFixture(t)
	for _, c := range []struct {
		name  string
		setup func(t *testing.T)
		req   api.MigrateRequest
		want  string
	}{
		{"vm not ready", func(t *testing.T) { change(t, f, "vm1", func(v *api.VM) { v.Status.Phase = api.PhaseCreating }) },
			api.MigrateRequest{Host: "h2"}, "migrate: vm vm1 is still being created"},
		{"same host", nil, api.MigrateRequest{Host: "h1"}, "migrate vm vm1: vm vm1 is already there"},
		{"unknown host", nil, api.MigrateRequest{Host: "h9"}, `migrate vm vm1: host "h9" not found`},
		{"disconnected", func(t *testing.T) {
			change(t, f, "h2", func(h *api.Host) { h.Status.Connection = api.HostDisconnected })
		}, api.MigrateRequest{Host: "h2"}, "migrate vm vm1: host h2 is disconnected"},
		{"in maintenance", func(t *testing.T) { change(t, f, "h2", func(h *api.Host) { h.Spec.Maintenance = true }) },
			api.MigrateRequest{Host: "h2"}, "migrate vm vm1: host h2 is in maintenance"},
		{"no room", func(t *testing.T) { change(t, f, "h2", func(h *api.Host) { h.Status.CPUs = 1 }) }, api.MigrateRequest{Host: "h2"},
			"migrate vm vm1: cannot power on vm vm1: host h2 has room for 1 vCPU and 16 GiB of memory, the VM needs 2 vCPU and 1 GiB"},
		{"other hypervisor", func(t *testing.T) { change(t, f, "h2", func(h *api.Host) { h.Status.Hypervisor = "QEMU 8.2" }) },
			api.MigrateRequest{Host: "h2"},
			"migrate vm vm1: host h2 runs QEMU 8.2 (kvm), the VM's host QEMU 9.2 (kvm): a running VM moves only between the same"},
		{"disk's datastore not reached", func(t *testing.T) {
			change(t, f, "vm1", func(v *api.VM) { v.Spec.Disks[0].Datastore = f.ref("ds2") })
		}, api.MigrateRequest{Host: "h2"}, "migrate vm vm1: host h2 does not reach datastore ds2 of disk disk0: give a datastore to copy it to"},
		{"target datastore not reached", nil, api.MigrateRequest{Host: "h2", Datastore: "ds2"},
			"migrate vm vm1: host h2 does not reach datastore ds2"},
		{"datastore full", func(t *testing.T) {
			change(t, f, "ds3", func(d *api.Datastore) { d.Status.CapacityBytes, d.Status.FreeBytes = 100<<30, 1<<30 })
			change(t, f, "vm1", func(v *api.VM) { v.Status.Disks = []api.DiskStatus{{Name: "disk0", AllocatedBytes: 2 << 30}} })
		}, api.MigrateRequest{Host: "h2", Datastore: "ds3"},
			"migrate vm vm1: datastore ds3 has 1 GiB free; the disks of vm vm1 to copy there hold 2 GiB"},
		{"hot-adding", func(t *testing.T) {
			tk := tasks.New(context.Background(), api.OpVMHotAdd, f.vm(t), nil)
			tk.State = api.TaskRunning
			if _, err := f.st.Store.Create(context.Background(), tk); err != nil {
				t.Fatal(err)
			}
			f.sync(t)
			t.Cleanup(func() {
				_ = state.Update(context.Background(), f.st, nil, tk.Metadata.ID, func(x *api.Task) error { x.State = api.TaskSucceeded; return nil })
				f.sync(t)
			})
		}, api.MigrateRequest{Host: "h2"}, "migrate vm vm1: vm vm1 is getting vCPUs or memory hot-added (task "},
		{"port group not realized on the target", func(t *testing.T) {
			ctx := context.Background()
			sw := &api.Switch{Metadata: f.meta("sw1"), Spec: api.SwitchSpec{Cluster: f.ref("c1"), Backend: api.BackendBridge, MTU: 1500}}
			pg := &api.PortGroup{Metadata: f.meta("web"), Spec: api.PortGroupSpec{Datacenter: api.Ref{ID: "dc1"}, Switch: f.ref("sw1"), VLAN: 20}}
			for _, o := range []api.Object{sw, pg} {
				if _, err := f.st.Store.Create(ctx, o); err != nil {
					t.Fatal(err)
				}
			}
			f.sync(t)
			change(t, f, "vm1", func(v *api.VM) {
				v.Spec.NICs = []api.VMNIC{{Name: "nic0", PortGroup: f.ref("web"), MAC: "52:54:00:00:00:01", Model: "virtio"}}
			})
			change(t, f, "h2", func(h *api.Host) {
				h.Status.Networks = []api.SwitchReport{{Switch: f.ids["sw1"], PortGroups: map[string]string{f.ids["web"]: "no 802.1Q VLAN support (8021q)"}}}
			})
		}, api.MigrateRequest{Host: "h2"}, "migrate vm vm1: host h2 has not realized port group web (nic0 of vm vm1): no 802.1Q VLAN support (8021q)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup(t)
			}
			vm := f.vm(t)
			before := len(state.List[*api.Task](f.st, func(tk *api.Task) bool { return tk.Op == api.OpVMMigrate }))
			_, err := f.svc.Migrate(context.Background(), vm, f.host(t, "h1"), c.req)
			if err == nil || !strings.HasPrefix(err.Error(), c.want) {
				t.Fatalf("migrate %+v:\n got %v\nwant %s", c.req, err, c.want)
			}
			f.sync(t)
			if n := len(state.List[*api.Task](f.st, func(tk *api.Task) bool { return tk.Op == api.OpVMMigrate })); n != before {
				t.Errorf("a refused migration queued a task")
			}
			if calls := f.calls(); len(calls) > 0 {
				t.Errorf("a refused migration called the hosts: %v", calls)
			}
			if got := f.vm(t); got.Spec.Host.ID != f.ids["h1"] {
				t.Errorf("a refused migration moved the VM to %s", got.Spec.Host.Name)
			}
		})
	}
}

// A migration the source cannot start sending undoes the target's copy;
// the VM stays on its host, running.
func TestMigrateOutFailsUndoes(t *testing.T) {
	f := newFixture(t)
	f.answerLive(func() hypervisor.MigrationStatus {
		return hypervisor.MigrationStatus{State: hypervisor.MigrationActive}
	})
	f.fake.On["MigrateOut"] = func(hoststest.Call) ([]any, error) {
		return nil, api.Errorf(api.ErrUnavailable, "QEMU refused: no route to host")
	}
	f.start()
	tk := f.migrate(t, api.MigrateRequest{Host: "h2"})
	want := "start sending vm vm1 from host h1: QEMU refused: no route to host"
	if tk.State != api.TaskFailed || tk.Error == nil || tk.Error.Message != want {
		t.Fatalf("task %s, error %+v; want failed with %q", tk.State, tk.Error, want)
	}
	calls := f.calls()
	if !slices.Contains(calls, "AbortIncoming h2") {
		t.Errorf("the target's copy was not thrown away: %v", calls)
	}
	for _, c := range []string{"FinishIncoming h2", "Release h1"} {
		if slices.Contains(calls, c) {
			t.Errorf("a failed migration called %s: %v", c, calls)
		}
	}
	vm := f.vm(t)
	if vm.Spec.Host.ID != f.ids["h1"] || vm.Status.PowerState != api.PowerOn {
		t.Errorf("after a failed migration the VM is %s on %s", vm.Status.PowerState, vm.Spec.Host.Name)
	}
}

// A user's cancel of a running migration stops the source sending and
// throws the target's copy away; the VM runs on where it was.
func TestCanceledMigrationUndoes(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var sent int64
	polled := make(chan struct{})
	var once sync.Once
	f.answerLive(func() hypervisor.MigrationStatus {
		mu.Lock()
		defer mu.Unlock()
		if sent > 0 { // asked while following, past the hardware read
			once.Do(func() { close(polled) })
		}
		sent += 1 << 20 // moving on, never done
		return hypervisor.MigrationStatus{State: hypervisor.MigrationActive, TotalBytes: 1 << 30, TransferredBytes: sent, RemainingBytes: 1 << 29}
	})
	f.start()
	vm := f.vm(t)
	tk, err := f.svc.Migrate(context.Background(), vm, f.host(t, "h1"), api.MigrateRequest{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-polled:
	case <-time.After(time.Minute):
		t.Fatalf("the migration was never followed: %v", f.calls())
	}
	if err := state.Update(context.Background(), f.st, nil, tk.Metadata.ID, func(x *api.Task) error { x.CancelRequested = true; return nil }); err != nil {
		t.Fatal(err)
	}
	done := f.wait(t, tk.Metadata.ID)
	if done.State != api.TaskCanceled {
		t.Fatalf("a canceled migration ended %s (%+v)", done.State, done.Error)
	}
	calls := f.calls()
	for _, c := range []string{"CancelMigration h1", "AbortIncoming h2"} {
		if !slices.Contains(calls, c) {
			t.Errorf("a canceled migration did not call %s: %v", c, calls)
		}
	}
	if slices.Contains(calls, "FinishIncoming h2") || slices.Contains(calls, "Release h1") {
		t.Errorf("a canceled migration switched over: %v", calls)
	}
	vm = f.vm(t)
	if vm.Spec.Host.ID != f.ids["h1"] || vm.Status.PowerState != api.PowerOn {
		t.Errorf("after a canceled migration the VM is %s on %s", vm.Status.PowerState, vm.Spec.Host.Name)
	}
}

// A migration that completes records the VM on its new host with the
// state the target reports, and has the source forget it, in that order
// of calls: copy, send, run the copy, release.
func TestMigrationSwitchesOver(t *testing.T) {
	f := newFixture(t)
	f.answerLive(func() hypervisor.MigrationStatus {
		return hypervisor.MigrationStatus{State: hypervisor.MigrationCompleted, TotalBytes: 1 << 30, TransferredBytes: 1 << 30, Pass: 3}
	})
	f.start()
	tk := f.migrate(t, api.MigrateRequest{Host: "h2"})
	if tk.State != api.TaskSucceeded {
		t.Fatalf("task %s: %+v", tk.State, tk.Error)
	}
	vm := f.vm(t)
	if vm.Spec.Host.ID != f.ids["h2"] || vm.Status.StateSeq != 7 || vm.Status.PowerState != api.PowerOn {
		t.Errorf("after the migration: host %s, seq %d, %s", vm.Spec.Host.Name, vm.Status.StateSeq, vm.Status.PowerState)
	}
	var order []string
	for _, c := range f.calls() {
		if c != "VM h1" {
			order = append(order, c)
		}
	}
	if want := []string{"Incoming h2", "MigrateOut h1", "FinishIncoming h2", "Release h1"}; !slices.Equal(order, want) {
		t.Errorf("calls %v, want %v", order, want)
	}
	for _, c := range f.fake.Calls() {
		if c.Method == "Release" && c.Args[1] != false {
			t.Errorf("a migration without storage had the source remove the disks: %v", c.Args)
		}
	}
	if !strings.Contains(string(tk.Result), `"live":true`) || !strings.Contains(string(tk.Result), `"passes":3`) {
		t.Errorf("result %s", tk.Result)
	}
}

// The target host going silent while the VM moves cancels the migration
// on the source and throws the copy away.
func TestTargetGoneSilentCancels(t *testing.T) {
	f := newFixture(t)
	var mu sync.Mutex
	var sent int64
	polled := make(chan struct{})
	var once sync.Once
	f.answerLive(func() hypervisor.MigrationStatus {
		mu.Lock()
		defer mu.Unlock()
		if sent > 0 {
			once.Do(func() { close(polled) })
		}
		sent += 1 << 20
		return hypervisor.MigrationStatus{State: hypervisor.MigrationActive, TotalBytes: 1 << 30, TransferredBytes: sent, RemainingBytes: 1 << 29}
	})
	f.start()
	tk, err := f.svc.Migrate(context.Background(), f.vm(t), f.host(t, "h1"), api.MigrateRequest{Host: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-polled:
	case <-time.After(time.Minute):
		t.Fatalf("the migration was never followed: %v", f.calls())
	}
	change(t, f, "h2", func(h *api.Host) { h.Status.Connection = api.HostDisconnected })
	done := f.wait(t, tk.Metadata.ID)
	want := "migrate vm vm1 from host h1 to h2: host h2 stopped sending heartbeats (its agent is down or it is cut off); it runs on h1 as before"
	if done.State != api.TaskFailed || done.Error == nil || done.Error.Message != want {
		t.Fatalf("task %s %+v, want failed with %q", done.State, done.Error, want)
	}
	if calls := f.calls(); !slices.Contains(calls, "CancelMigration h1") || !slices.Contains(calls, "AbortIncoming h2") {
		t.Errorf("calls %v", calls)
	}
}

// A powered-off VM moves by definition on the target and release on the
// source.
func TestColdMigration(t *testing.T) {
	f := newFixture(t)
	change(t, f, "vm1", func(v *api.VM) { v.Status.PowerState = api.PowerOff })
	f.fake.On["Define"] = func(c hoststest.Call) ([]any, error) {
		return []any{api.AgentVMState{ID: c.VM, PowerState: api.PowerOff, Seq: 3}}, nil
	}
	f.start()
	tk := f.migrate(t, api.MigrateRequest{Host: "h2"})
	if tk.State != api.TaskSucceeded {
		t.Fatalf("task %s: %+v", tk.State, tk.Error)
	}
	if calls, want := f.calls(), []string{"Define h2", "Release h1"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if vm := f.vm(t); vm.Spec.Host.ID != f.ids["h2"] || vm.Status.StateSeq != 3 {
		t.Errorf("after a cold migration: host %s, seq %d", vm.Spec.Host.Name, vm.Status.StateSeq)
	}
}

// A cold migration whose source cannot release the VM undefines it on the
// target again.
func TestColdMigrationReleaseFailsUndoes(t *testing.T) {
	f := newFixture(t)
	change(t, f, "vm1", func(v *api.VM) { v.Status.PowerState = api.PowerOff })
	f.fake.On["Release"] = func(hoststest.Call) ([]any, error) { return nil, errors.New("disk busy") }
	f.start()
	tk := f.migrate(t, api.MigrateRequest{Host: "h2"})
	if want := "release vm vm1 on host h1: disk busy"; tk.State != api.TaskFailed || tk.Error.Message != want {
		t.Fatalf("task %s %+v, want %q", tk.State, tk.Error, want)
	}
	if calls, want := f.calls(), []string{"Define h2", "Release h1", "Undefine h2"}; !slices.Equal(calls, want) {
		t.Errorf("calls %v, want %v", calls, want)
	}
	if vm := f.vm(t); vm.Spec.Host.ID != f.ids["h1"] {
		t.Errorf("the VM is recorded on %s", vm.Spec.Host.Name)
	}
}

// A child migration runs under its parent, for its owner, to the host
// asked for.
func TestQueueChild(t *testing.T) {
	f := newFixture(t)
	f.answerLive(func() hypervisor.MigrationStatus {
		return hypervisor.MigrationStatus{State: hypervisor.MigrationCompleted}
	})
	f.start()
	parent := tasks.New(auth.With(context.Background(), auth.Principal{User: "alice"}), api.OpHostMaintenanceEnter, f.host(t, "h1"), nil)
	child, err := f.svc.QueueChild(context.Background(), Child{VM: f.vm(t), HostID: f.ids["h2"], Parent: parent})
	if err != nil {
		t.Fatal(err)
	}
	if child.Parent != parent.Metadata.ID || child.Owner != "alice" || child.Op != api.OpVMMigrate {
		t.Errorf("child %+v", child)
	}
	if done := f.wait(t, child.Metadata.ID); done.State != api.TaskSucceeded {
		t.Fatalf("child %s: %+v", done.State, done.Error)
	}
	if vm := f.vm(t); vm.Spec.Host.ID != f.ids["h2"] {
		t.Errorf("the child moved the VM to %s", vm.Spec.Host.Name)
	}
}

// Copies no migration task waits for are dropped; the one a running
// migration waits for is kept.
func TestOrphanCopies(t *testing.T) {
	f := newFixture(t)
	tk := tasks.New(context.Background(), api.OpVMMigrate, f.vm(t), nil)
	tk.State = api.TaskRunning
	if _, err := f.st.Store.Create(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	f.sync(t)
	got := f.svc.OrphanCopies(f.host(t, "h2"), []string{f.ids["vm1"], "gone-vm"})
	if fmt.Sprint(got) != "[gone-vm]" {
		t.Errorf("dropped %v, want only gone-vm", got)
	}
}
