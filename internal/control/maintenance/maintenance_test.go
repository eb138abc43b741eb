package maintenance_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/maintenance"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a cluster on a real store with a shared datastore and hosts of
// 4 vCPU and 4 GiB without overcommit; vm.migrate tasks run migrate.
type world struct {
	t     *testing.T
	st    *state.State
	tally *state.Tally
	sub   *tasks.Submitter
	svc   *maintenance.Service
	cl    *api.Cluster
	ds    *api.Datastore
	hosts map[string]*api.Host
	// migrate does a vm.migrate task's work (moves the VM by default).
	migrate func(ctx context.Context, t *tasks.Run) error
	// queued, if set, is told of every migration the evacuation queues.
	queued func()
}

type migrateParams struct {
	Host string `json:"host"`
}

// migrations queues child migrations as the server's adapter does.
type migrations struct{ w *world }

func (m migrations) Migrate(ctx context.Context, t *tasks.Run, vm *api.VM, hostID string) (*api.Task, error) {
	if m.w.queued != nil {
		m.w.queued()
	}
	child := tasks.New(ctx, api.OpVMMigrate, vm, migrateParams{Host: hostID})
	child.Owner, child.Parent = t.Task.Owner, t.Task.Metadata.ID
	return m.w.sub.Submit(ctx, m.w.st.Store.Txn(), child)
}

func newWorld(t *testing.T, hostNames ...string) *world {
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	w := &world{t: t, st: st, tally: tally, sub: &tasks.Submitter{State: st}, hosts: map[string]*api.Host{}}
	w.migrate = func(ctx context.Context, t *tasks.Run) error { return nil }
	dc := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc1"}}
	w.cl = &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "cluster1"},
		Spec: api.ClusterSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, CPUOvercommit: 1, MemoryOvercommit: 1}}
	w.ds = &api.Datastore{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "shared"},
		Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, Path: "/srv/shared", Shared: true}}
	w.create(dc, w.cl, w.ds)
	for _, n := range hostNames {
		h := &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: n}, Spec: api.HostSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}},
			Status: api.HostStatus{Connection: api.HostConnected, Hypervisor: "QEMU 8.2", Accel: "kvm", CPUs: 4, MemoryBytes: 4 << 30,
				Datastores: []api.Ref{{ID: w.ds.Metadata.ID}}}}
		w.hosts[n] = h
		w.create(h)
	}
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: hoststest.New(), Tasks: w.sub}
	w.svc = maintenance.New(maintenance.Deps{State: st, Inv: inv, Places: placement.New(st, tally), Migrations: migrations{w}, Log: quiet})
	r := tasks.NewRunner(st, st.Store.Txn, "test", quiet)
	w.svc.Register(r)
	r.Register(api.OpVMMigrate, tasks.Handler{Run: w.runMigrate, Resumable: true, Cancelable: true})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); r.Wait() })
	r.Start(ctx)
	return w
}

// runMigrate does what w.migrate says, then moves the VM.
func (w *world) runMigrate(ctx context.Context, t *tasks.Run) (any, error) {
	var p migrateParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	if err := w.migrate(ctx, t); err != nil {
		return nil, err
	}
	t.Stage(api.KindVM, t.Task.Target.ID, func(o api.Object) error {
		o.(*api.VM).Spec.Host = api.Ref{ID: p.Host}
		return nil
	})
	return nil, nil
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

// vm makes a ready VM of 1 vCPU on host h with a disk on the shared
// datastore.
func (w *world) vm(name, h, power string, mem api.Size) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name},
		Spec: api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}, Host: api.Ref{ID: w.hosts[h].Metadata.ID}, CPUs: 1, MemoryBytes: mem,
			Disks: []api.VMDisk{{Name: "disk0", Datastore: api.Ref{ID: w.ds.Metadata.ID}, Path: name + "/disk0.qcow2", SizeBytes: 1 << 30}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: power}}
	w.create(vm)
	return vm
}

func (w *world) host(name string) *api.Host {
	h, _ := state.Get[*api.Host](w.st, w.hosts[name].Metadata.ID)
	return h
}

func (w *world) hostName(id string) string {
	for n, h := range w.hosts {
		if h.Metadata.ID == id {
			return n
		}
	}
	return id
}

// enter puts host h in maintenance as the API does: the change and its
// task in one write.
func (w *world) enter(name string) (*api.Task, error) {
	w.t.Helper()
	ctx := context.Background()
	h := store.Clone(w.host(name))
	evacuate, err := w.svc.Change(h, true)
	if err != nil {
		return nil, err
	}
	tk := tasks.New(ctx, api.OpHostMaintenanceEnter, h, api.MaintenanceRequest{Action: api.MaintenanceEnter})
	if !evacuate {
		tasks.Done(tk, nil)
	}
	return w.sub.Submit(ctx, w.st.Store.Txn().Update(w.host(name), h), tk)
}

// wait returns a task once keep accepts it.
func (w *world) wait(id string, keep func(*api.Task) bool) *api.Task {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for {
		if tk, ok := state.Get[*api.Task](w.st, id); ok {
			if keep(tk) {
				return tk
			}
			rev = tk.Metadata.Revision
		}
		if _, err := w.st.Cache.WaitChange(ctx, api.KindTask, id, rev); err != nil {
			w.t.Fatalf("task %s: %v", id, err)
		}
	}
}

func done(tk *api.Task) bool { return api.TaskDone(tk.State) }

// The plan for a host's VMs spreads them over the hosts with room, counting
// what it placed, and leaves the host itself out.
func TestPlanSpreadsTheVMs(t *testing.T) {
	w := newWorld(t, "h1", "h2", "h3")
	for _, n := range []string{"a", "b", "c", "d"} {
		w.vm(n, "h1", api.PowerOn, 2<<30)
	}
	w.vm("off", "h1", api.PowerOff, 2<<30)
	plan, stuck, err := w.svc.Plan(w.host("h1"))
	if err != nil || len(stuck) > 0 {
		t.Fatalf("plan: %v, stuck %v", err, stuck)
	}
	running := map[string]int{}
	for _, e := range plan {
		if e.VM.Status.PowerState == api.PowerOn {
			running[w.hostName(e.To)]++
		}
	}
	if len(plan) != 5 || running["h2"] != 2 || running["h3"] != 2 {
		t.Errorf("plan of %d moves puts running VMs %v, want 2 on h2 and 2 on h3", len(plan), running)
	}
}

// Without room for them, the plan fails naming the VMs that cannot move
// and why, and so does entering maintenance, which leaves the host as it
// was.
func TestPlanNamesTheVMsThatCannotMove(t *testing.T) {
	w := newWorld(t, "h1", "h2")
	w.vm("a", "h1", api.PowerOn, 3<<30)
	w.vm("b", "h1", api.PowerOn, 3<<30)
	w.vm("sus", "h1", api.PowerSuspended, 1<<30)
	w.vm("off", "h1", api.PowerOff, 3<<30)
	plan, stuck, err := w.svc.Plan(w.host("h1"))
	if len(plan) != 2 || len(stuck) != 2 || !strings.HasPrefix(stuck[1], "sus (suspended)") {
		t.Errorf("plan %d moves, stuck %q", len(plan), stuck)
	}
	if !errors.Is(err, api.ErrUnprocessable) || !strings.HasPrefix(err.Error(), "cannot evacuate host h1: 2 VMs have nowhere to go: ") ||
		!strings.Contains(err.Error(), "no host has room for 1 vCPU and 3 GiB") {
		t.Errorf("plan: %v", err)
	}
	if _, err := w.enter("h1"); !errors.Is(err, api.ErrUnprocessable) || w.host("h1").Spec.Maintenance {
		t.Errorf("enter: %v, maintenance %v", err, w.host("h1").Spec.Maintenance)
	}
}

// The evacuation moves the VMs at most four at a time: the fifth is
// queued only once one of the first four ended. It ends with the host
// empty and in maintenance.
func TestEvacuationMovesFourAtATime(t *testing.T) {
	w := newWorld(t, "h1", "h2", "h3")
	for _, n := range []string{"a", "b", "c", "d", "e", "f"} {
		w.vm(n, "h1", api.PowerOn, 512<<20)
	}
	var mu sync.Mutex
	active, most, finished := 0, 0, 0
	var endedBefore []int // by migration queued: how many had ended then
	w.queued = func() {
		mu.Lock()
		endedBefore = append(endedBefore, finished)
		mu.Unlock()
	}
	full, release := make(chan struct{}), make(chan struct{})
	w.migrate = func(ctx context.Context, t *tasks.Run) error {
		mu.Lock()
		active++
		if most = max(most, active); active == 4 && most == 4 {
			close(full)
		}
		mu.Unlock()
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		mu.Lock()
		active--
		finished++
		mu.Unlock()
		return nil
	}
	tk, err := w.enter("h1")
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-full:
	case <-time.After(time.Minute):
		t.Fatal("never 4 migrations at once")
	}
	close(release)
	tk = w.wait(tk.Metadata.ID, done)
	if tk.State != api.TaskSucceeded || string(tk.Result) != `{"moved":6}` {
		t.Fatalf("evacuation: %s %s %+v", tk.State, tk.Result, tk.Error)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, n := range endedBefore {
		if n < i-3 {
			t.Errorf("migration %d queued when %d had ended: more than 4 at once", i+1, n)
		}
	}
	if left := w.tally.VMsOn(w.hosts["h1"].Metadata.ID); most != 4 || len(endedBefore) != 6 || len(left) != 0 || !w.host("h1").Spec.Maintenance {
		t.Errorf("at most %d at once, %d queued; h1 has %d VMs left; in maintenance %v", most, len(endedBefore), len(left), w.host("h1").Spec.Maintenance)
	}
}

// A VM that fails to move takes the host out of maintenance again, and
// the evacuation says which.
func TestFailedMoveUndoesMaintenance(t *testing.T) {
	w := newWorld(t, "h1", "h2")
	w.vm("a", "h1", api.PowerOn, 512<<20)
	w.vm("b", "h1", api.PowerOn, 512<<20)
	w.migrate = func(ctx context.Context, t *tasks.Run) error {
		if t.Task.Target.Name == "b" {
			return api.Errorf(api.ErrConflict, "the target refused b")
		}
		return nil
	}
	tk, err := w.enter("h1")
	if err != nil {
		t.Fatal(err)
	}
	tk = w.wait(tk.Metadata.ID, done)
	if tk.State != api.TaskFailed || tk.Error.Message != "host h1 left maintenance: 1 VMs could not move: b (the target refused b) (1 moved)" {
		t.Fatalf("evacuation: %s %+v", tk.State, tk.Error)
	}
	if w.host("h1").Spec.Maintenance {
		t.Error("h1 stayed in maintenance")
	}
}

// Canceling the evacuation cancels the migrations under way and takes
// the host out of maintenance.
func TestCanceledEvacuationUndoesMaintenance(t *testing.T) {
	w := newWorld(t, "h1", "h2")
	w.vm("a", "h1", api.PowerOn, 512<<20)
	started := make(chan string, 1)
	w.migrate = func(ctx context.Context, t *tasks.Run) error {
		started <- t.Task.Metadata.ID
		<-ctx.Done()
		return ctx.Err()
	}
	tk, err := w.enter("h1")
	if err != nil {
		t.Fatal(err)
	}
	child := <-started
	ctx := context.Background()
	if err := state.Update(ctx, w.st, nil, tk.Metadata.ID, func(t *api.Task) error { t.CancelRequested = true; return nil }); err != nil {
		t.Fatal(err)
	}
	tk = w.wait(tk.Metadata.ID, done)
	if tk.State != api.TaskCanceled {
		t.Errorf("evacuation: %s %+v", tk.State, tk.Error)
	}
	if c := w.wait(child, done); c.State != api.TaskCanceled {
		t.Errorf("migration: %s %+v", c.State, c.Error)
	}
	if w.host("h1").Spec.Maintenance {
		t.Error("h1 stayed in maintenance after the cancel")
	}
	if _, err := w.svc.Change(store.Clone(w.host("h1")), false); err == nil || err.Error() != `host "h1" is already not in maintenance` {
		t.Errorf("exit after the cancel: %v", err)
	}
}
