package storage_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const gib = api.Size(1 << 30)

// world is a datacenter with one cluster, on a real store, with fake hosts:
// host h1 (connected, 8 vCPU and 16 GiB) reaching the shared datastore ds1
// at /ds1. The runner is started only by tests that run tasks; until then
// every task queued stays queued, holding its claims.
type world struct {
	st     *state.State
	hosts  *hoststest.Fake
	svc    *storage.Service
	runner *tasks.Runner
	dc     *api.Datacenter
	cl     *api.Cluster
	h1     *api.Host
	ds1    *api.Datastore
}

func newWorld(t *testing.T) *world {
	t.Helper()
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	sub := &tasks.Submitter{State: st}
	fake := hoststest.New()
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: fake, Tasks: sub}
	w := &world{st: st, hosts: fake,
		svc: storage.New(storage.Deps{State: st, Inv: inv, Hosts: fake, Places: placement.New(st, tally), Tasks: sub, Log: quiet,
			RetryEvery: 10 * time.Millisecond}),
		runner: tasks.NewRunner(st, st.Store.Txn, "test", quiet)}
	w.svc.Register(w.runner)
	w.dc = &api.Datacenter{Metadata: api.ObjectMeta{ID: "id-dc1", Name: "dc1"}}
	w.cl = &api.Cluster{Metadata: api.ObjectMeta{ID: "id-cl1", Name: "cl1"}, Spec: api.ClusterSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, CPUOvercommit: 1, MemoryOvercommit: 1}}
	w.ds1 = &api.Datastore{Metadata: api.ObjectMeta{ID: "id-ds1", Name: "ds1"}, Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Path: "/ds1", Shared: true}}
	w.h1 = w.host("h1", w.cl, w.ds1)
	w.create(t, w.dc, w.cl, w.ds1, w.h1)
	return w
}

// host is a connected host of cl reaching the datastores given.
func (w *world) host(name string, cl *api.Cluster, dss ...*api.Datastore) *api.Host {
	h := &api.Host{Metadata: api.ObjectMeta{ID: "id-" + name, Name: name}, Spec: api.HostSpec{Cluster: api.Ref{ID: cl.Metadata.ID}},
		Status: api.HostStatus{Connection: api.HostConnected, CPUs: 8, MemoryBytes: 16 * gib}}
	for _, ds := range dss {
		h.Status.Datastores = append(h.Status.Datastores, api.Ref{ID: ds.Metadata.ID})
	}
	return h
}

// create writes objects to the store and waits for the cache to have them.
func (w *world) create(t *testing.T, objs ...api.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		if _, err := w.st.Store.Create(ctx, o); err != nil {
			t.Fatalf("create %s %s: %v", o.Kind(), o.GetMeta().Name, err)
		}
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// disk is a disk of vm v1 on ds1 in file v1/FILE.qcow2.
func (w *world) disk(name, file string) api.VMDisk {
	return api.VMDisk{Name: name, Path: "v1/" + file + ".qcow2", Datastore: api.Ref{ID: w.ds1.Metadata.ID}, SizeBytes: gib, Bus: api.BusVirtio}
}

// vm makes a powered-off VM on h1 with disk0 in v1/cur.qcow2 and one NIC;
// edit changes it first. It returns the VM as the cache has it.
func (w *world) vm(t *testing.T, name string, edit func(*api.VM)) *api.VM {
	t.Helper()
	vm := &api.VM{Metadata: api.ObjectMeta{ID: "id-" + name, Name: name},
		Spec: api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}, Host: api.Ref{ID: w.h1.Metadata.ID}, CPUs: 1, MemoryBytes: 512 << 20,
			Disks: []api.VMDisk{w.disk("disk0", "cur")}, NICs: []api.VMNIC{{Name: "net0", MAC: "52:54:00:00:00:01"}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOff}}
	if edit != nil {
		edit(vm)
	}
	w.create(t, vm)
	return w.cached(t, vm.Metadata.ID)
}

func (w *world) cached(t *testing.T, id string) *api.VM {
	t.Helper()
	vm, ok := state.Get[*api.VM](w.st, id)
	if !ok {
		t.Fatalf("vm %s is not in the cache", id)
	}
	return vm
}

func (w *world) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); w.runner.Wait() })
	w.runner.Start(ctx)
}

// wait returns a task once it is done.
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
		if _, err := w.st.Cache.WaitChange(ctx, api.KindTask, id, rev); err != nil && !errors.Is(err, api.ErrNotFound) {
			t.Fatalf("task %s: %v", id, err)
		} else if err != nil {
			if err := w.st.Cache.Sync(ctx); err != nil {
				t.Fatalf("task %s: %v", id, err)
			}
		}
	}
}

// run waits for a task and fails the test unless it succeeded.
func (w *world) run(t *testing.T, tk *api.Task, err error) *api.Task {
	t.Helper()
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	done := w.wait(t, tk.Metadata.ID)
	if done.State != api.TaskSucceeded {
		t.Fatalf("task %s %s: %s %v", done.Op, done.Target.Name, done.State, done.Error)
	}
	return done
}

// calls lists the fake host's calls of one method.
func (w *world) calls(method string) []hoststest.Call {
	var out []hoststest.Call
	for _, c := range w.hosts.Calls() {
		if c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// params decodes a task's parameters.
func params[T any](t *testing.T, tk *api.Task) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(tk.Params, &v); err != nil {
		t.Fatalf("params of task %s: %v", tk.Metadata.ID, err)
	}
	return v
}

// wantErr checks an error's kind and message.
func wantErr(t *testing.T, what string, err, kind error, msg string) {
	t.Helper()
	if err == nil || !errors.Is(err, kind) || err.Error() != msg {
		t.Errorf("%s: %v\n  want %v: %s", what, err, kind, msg)
	}
}

// tree shows a VM's stored snapshots as "name<parent" ("~" marks a
// deleted one), then the current state's base and its first disk's file.
func tree(vm *api.VM) string {
	byID := map[string]string{}
	for _, s := range vm.Spec.Snapshots {
		byID[s.ID] = s.Name
	}
	var out []string
	for _, s := range vm.Spec.Snapshots {
		n := s.Name + "<" + byID[s.ParentID]
		if s.Hidden {
			n = "~" + n
		}
		out = append(out, n+"@"+s.Disks[0].Path)
	}
	return strings.Join(out, " ") + " | current " + byID[vm.Spec.CurrentSnapshotID] + "@" + vm.Spec.Disks[0].Path
}

func (w *world) readVM(id string) (*api.VM, error) {
	return state.Read[*api.VM](context.Background(), w.st, id)
}

func (w *world) tasks() []*api.Task { return state.List[*api.Task](w.st, nil) }
