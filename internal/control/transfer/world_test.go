package transfer_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/control/transfer"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a datacenter with one cluster of one connected host, which
// reaches a shared datastore (a real directory), two port groups, and a
// second datacenter with a port group of its own; the hosts are a fake.
type world struct {
	st     *state.State
	hosts  *hoststest.Fake
	vms    *fakeVMs
	svc    *transfer.Service
	runner *tasks.Runner
	dc     *api.Datacenter
	cl     *api.Cluster
	h      *api.Host
	ds     *api.Datastore
}

func newWorld(t *testing.T) *world {
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	ctx := context.Background()
	w := &world{st: st, hosts: hoststest.New()}
	w.dc = &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc1"}}
	other := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc2"}}
	w.cl = &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "cluster1"},
		Spec: api.ClusterSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, CPUOvercommit: 1, MemoryOvercommit: 1}}
	w.ds = &api.Datastore{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "datastore1"},
		Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Path: t.TempDir(), Shared: true}}
	w.h = &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "host-1"}, Spec: api.HostSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}},
		Status: api.HostStatus{Connection: api.HostConnected, CPUs: 8, MemoryBytes: 16 << 30, Datastores: []api.Ref{{ID: w.ds.Metadata.ID}}}}
	pg := func(name string, dc *api.Datacenter) *api.PortGroup {
		return &api.PortGroup{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.PortGroupSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}}}
	}
	for _, o := range []api.Object{w.dc, other, w.cl, w.ds, w.h, pg("vm-network", w.dc), pg("backend", w.dc), pg("far-away", other)} {
		if _, err := st.Store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	sub := &tasks.Submitter{State: st}
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: w.hosts, Tasks: sub}
	w.vms = &fakeVMs{w: w}
	w.svc = transfer.New(transfer.Deps{State: st, Inv: inv, Hosts: w.hosts, Places: placement.New(st, tally), Tasks: sub,
		VMs: w.vms, Disks: fakeDisks{}, Log: quiet})
	w.runner = tasks.NewRunner(st, st.Store.Txn, "test", quiet)
	w.svc.Register(w.runner)
	return w
}

// start runs the tasks queued, now and later.
func (w *world) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); w.runner.Wait() })
	w.runner.Start(ctx)
}

// wait returns the task once it is done.
func (w *world) wait(t *testing.T, id string) *api.Task {
	t.Helper()
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
			t.Fatalf("task %s: %v", id, err)
		}
	}
}

// create stores objects and waits for the cache to show them.
func (w *world) create(t *testing.T, objs ...api.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		if _, err := w.st.Store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// methods lists the calls the hosts took of these methods.
func (w *world) calls(methods ...string) []hoststest.Call {
	var out []hoststest.Call
	for _, c := range w.hosts.Calls() {
		for _, m := range methods {
			if c.Method == m {
				out = append(out, c)
			}
		}
	}
	return out
}

// fakeVMs builds VMs as the VM lifecycle would, in a simple way: one
// disk file per disk asked for, on the world's datastore, and no NICs.
type fakeVMs struct {
	w       *world
	mu      sync.Mutex
	defined []string
}

func (f *fakeVMs) Build(req *api.VMCreateRequest) (*api.VM, *api.Cluster, string, error) {
	id := store.NewID()
	vm := &api.VM{Metadata: api.ObjectMeta{ID: id, Name: req.Name, Labels: req.Labels},
		Spec:   api.VMSpec{Cluster: api.Ref{ID: f.w.cl.Metadata.ID}, CPUs: req.CPUs, MemoryBytes: req.Memory, Disks: []api.VMDisk{}},
		Status: api.VMStatus{Phase: api.PhaseCreating, PowerState: api.PowerOff}}
	dir := fmt.Sprintf("%s-%s", req.Name, id[len(id)-8:])
	for i, d := range req.Disks {
		vm.Spec.Disks = append(vm.Spec.Disks, api.VMDisk{Name: fmt.Sprintf("disk%d", i), Datastore: api.Ref{ID: f.w.ds.Metadata.ID},
			Path: path.Join(dir, fmt.Sprintf("disk%d.qcow2", i)), SizeBytes: d.Size, Bus: d.Bus})
	}
	return vm, f.w.cl, "", nil
}

func (f *fakeVMs) ValidateCreate(req *api.VMCreateRequest) error {
	if err := api.ValidateName("vm", req.Name); err != nil {
		return err
	}
	return inventory.ValidateVMShape(req.CPUs, req.Memory)
}

func (f *fakeVMs) Define(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host) error {
	f.mu.Lock()
	f.defined = append(f.defined, vm.Metadata.Name)
	f.mu.Unlock()
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		o.(*api.VM).Status.Phase = api.PhaseReady
		return nil
	})
	return nil
}

func (f *fakeVMs) PowerOn(ctx context.Context, t *tasks.Run, vmID string) (any, error) {
	return nil, fmt.Errorf("no power-ons in these tests")
}

func (f *fakeVMs) Defined() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.defined...)
}

// fakeDisks names disks after how many a VM has.
type fakeDisks struct{}

func (fakeDisks) NextDiskName(vm *api.VM) string { return fmt.Sprintf("disk%d", len(vm.Spec.Disks)) }

func (fakeDisks) ClaimDiskName(t *api.Task, vm *api.VM, name string) {
	t.Claims = append(t.Claims, inventory.VMClaim(vm.Metadata.ID, "disks", name))
}
