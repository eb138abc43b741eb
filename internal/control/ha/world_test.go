package ha_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/ha"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is an HA cluster on a real store: a shared datastore, hosts of
// 4 vCPU and 8 GiB without overcommit, fake agents that start whatever
// they are asked to, and HA's task handlers running.
type world struct {
	t     *testing.T
	st    *state.State
	fake  *hoststest.Fake
	svc   *ha.Service
	sub   *tasks.Submitter
	cl    *api.Cluster
	ds    *api.Datastore
	hosts map[string]*api.Host
}

func newWorld(t *testing.T, hostNames ...string) *world {
	w := newIdleWorld(t, hostNames...)
	r := tasks.NewRunner(w.st, w.st.Store.Txn, "test", quiet)
	w.svc.Register(r)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); r.Wait() })
	r.Start(ctx)
	return w
}

// newIdleWorld is a world where no task runs.
func newIdleWorld(t *testing.T, hostNames ...string) *world {
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	w := &world{t: t, st: st, fake: hoststest.New(), sub: &tasks.Submitter{State: st}, hosts: map[string]*api.Host{}}
	dc := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc1"}}
	haOn := ha.DefaultHA()
	haOn.Enabled = true
	w.cl = &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "cluster1"},
		Spec: api.ClusterSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, CPUOvercommit: 1, MemoryOvercommit: 1, HA: &haOn}}
	w.ds = &api.Datastore{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "shared"},
		Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, Path: "/srv/shared", Shared: true}}
	w.create(dc, w.cl, w.ds)
	for _, n := range hostNames {
		h := &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: n}, Spec: api.HostSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}},
			Status: api.HostStatus{Connection: api.HostConnected, Driver: "qemu", CPUs: 4, MemoryBytes: 8 << 30,
				Datastores: []api.Ref{{ID: w.ds.Metadata.ID}}}}
		w.hosts[n] = h
		w.create(h)
	}
	// The hosts start what they are asked to.
	w.fake.On["Power"] = func(c hoststest.Call) ([]any, error) {
		return []any{api.AgentVMState{ID: c.VM, PowerState: api.PowerOn, Seq: 100}}, nil
	}
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: w.fake, Tasks: w.sub}
	w.svc = ha.New(ha.Deps{State: st, Inv: inv, Hosts: w.fake, Places: placement.New(st, tally), Tasks: w.sub,
		Txn: st.Store.Txn, HeartbeatInterval: time.Second, RetryDelay: time.Millisecond, Log: quiet})
	return w
}

func (w *world) create(objs ...api.Object) {
	w.t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		rev, err := w.st.Store.Create(ctx, o)
		if err != nil {
			w.t.Fatalf("create %s: %v", o.GetMeta().Name, err)
		}
		o.GetMeta().Revision = rev
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		w.t.Fatal(err)
	}
}

// vm makes a ready VM of 1 vCPU on host h, with a disk on the shared
// datastore.
func (w *world) vm(name, h, power, prio string, mem api.Size) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name},
		Spec: api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}, Host: api.Ref{ID: w.hosts[h].Metadata.ID}, CPUs: 1, MemoryBytes: mem,
			HAPriority: prio, Disks: []api.VMDisk{{Name: "disk0", Datastore: api.Ref{ID: w.ds.Metadata.ID}, Path: name + "/disk0.qcow2", SizeBytes: 1 << 30}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: power, StateSeq: 1}}
	w.create(vm)
	return vm
}

// fail marks host h failed, as HA does when it declares it so.
func (w *world) fail(h string) {
	w.t.Helper()
	w.update(h, func(h *api.Host) {
		h.Status.Connection, h.Status.FailedAt = api.HostDisconnected, time.Now().UTC()
	})
}

func (w *world) update(name string, fn func(h *api.Host)) {
	w.t.Helper()
	ctx := context.Background()
	if err := state.Update(ctx, w.st, nil, w.hosts[name].Metadata.ID, func(h *api.Host) error { fn(h); return nil }); err != nil {
		w.t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		w.t.Fatal(err)
	}
	w.hosts[name], _ = state.Get[*api.Host](w.st, w.hosts[name].Metadata.ID)
}

// failover queues the failover of host h and returns the task once done.
func (w *world) failover(h string) *api.Task {
	w.t.Helper()
	ctx := context.Background()
	tk := tasks.New(ctx, api.OpHostFailover, w.hosts[h], nil)
	tk.Owner = ha.Owner
	tk, err := w.sub.Submit(ctx, w.st.Store.Txn(), tk)
	if err != nil {
		w.t.Fatal(err)
	}
	return w.wait(tk.Metadata.ID)
}

// wait returns a task once it ended.
func (w *world) wait(id string) *api.Task {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for {
		if tk, ok := state.Get[*api.Task](w.st, id); ok {
			if api.TaskDone(tk.State) {
				return tk
			}
			rev = tk.Metadata.Revision
		}
		if _, err := w.st.Cache.WaitChange(ctx, api.KindTask, id, rev); err != nil {
			w.t.Fatalf("task %s: %v", id, err)
		}
	}
}

// hostOf names the host a VM is on now.
func (w *world) hostOf(vm *api.VM) string {
	v, _ := state.Get[*api.VM](w.st, vm.Metadata.ID)
	for n, h := range w.hosts {
		if h.Metadata.ID == v.Spec.Host.ID {
			return n
		}
	}
	return v.Spec.Host.ID
}

// started lists, in order, the VMs the fake hosts powered on, and where.
func (w *world) started(names map[string]string) []string {
	var out []string
	for _, c := range w.fake.Calls() {
		if c.Method == "Power" && c.Args[1].(api.PowerRequest).Action == api.ActionStart {
			out = append(out, names[c.VM]+"@"+c.Host)
		}
	}
	return out
}

// restarts are the vm.ha-restart tasks, by VM name.
func (w *world) restarts() map[string][]*api.Task {
	out := map[string][]*api.Task{}
	for _, tk := range state.List(w.st, func(t *api.Task) bool { return t.Op == api.OpVMHARestart }) {
		out[tk.Target.Name] = append(out[tk.Target.Name], tk)
	}
	return out
}
