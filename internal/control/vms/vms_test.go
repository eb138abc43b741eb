package vms_test

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
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/control/vms"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeHA admits every power-on unless refuse is set, and records the
// hosts it was asked about.
type fakeHA struct {
	mu     sync.Mutex
	refuse error
	asked  []string
}

func (f *fakeHA) CheckHAAdmission(vm *api.VM, cl *api.Cluster, h *api.Host) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, h.Metadata.Name)
	return f.refuse
}

func (f *fakeHA) ValidateHAPriority(p string) error { return nil }

// set refuses every power-on with err from now on, and forgets the hosts
// asked about.
func (f *fakeHA) set(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse, f.asked = err, nil
}

func (f *fakeHA) hostsAsked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.asked...)
}

// fakeStorage knows of no cloud-init rule, snapshot file or linked clone
// but those a test sets.
type fakeStorage struct {
	files      []string
	dependents []string
}

func (fakeStorage) ValidateCloudInit(*api.CloudInit) error { return nil }
func (f fakeStorage) SnapshotFiles(*api.VM) []string       { return f.files }
func (f fakeStorage) Dependents(*api.VM) []string          { return f.dependents }

// world is a datacenter with one cluster (no overcommit) of two connected
// hosts, h1 with 1 vCPU and h2 with 4, both reaching the shared datastore
// ds1, and one port group; the VM service's tasks run on a runner with
// unfenced writes, and the hosts are a fake.
type world struct {
	st      *state.State
	hosts   *hoststest.Fake
	ha      *fakeHA
	storage *fakeStorage
	svc     *vms.Service
	sub     *tasks.Submitter
	h1, h2  *api.Host
	ds      *api.Datastore
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	dc := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc1"}}
	cl := &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "cluster1"},
		Spec: api.ClusterSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, CPUOvercommit: 1, MemoryOvercommit: 1}}
	ds := &api.Datastore{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "ds1"},
		Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, Path: "/srv/ds1", Shared: true}}
	pg := &api.PortGroup{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "pg1"}, Spec: api.PortGroupSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}}}
	host := func(name string, cpus int) *api.Host {
		return &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.HostSpec{Cluster: api.Ref{ID: cl.Metadata.ID}},
			Status: api.HostStatus{Connection: api.HostConnected, Address: name + ":7444", CPUs: cpus, MemoryBytes: 1 << 30,
				Datastores: []api.Ref{{ID: ds.Metadata.ID}}}}
	}
	w := &world{st: st, hosts: hoststest.New(), ha: &fakeHA{}, storage: &fakeStorage{}, h1: host("h1", 1), h2: host("h2", 4), ds: ds}
	for _, o := range []api.Object{dc, cl, ds, pg, w.h1, w.h2} {
		if _, err := st.Store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	w.sub = &tasks.Submitter{State: st}
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: w.hosts, Tasks: w.sub}
	w.svc = vms.New(vms.Deps{State: st, Inv: inv, Hosts: w.hosts, Places: placement.New(st, tally), Tasks: w.sub,
		HA: w.ha, Storage: w.storage, Log: quiet})
	r := tasks.NewRunner(st, st.Store.Txn, "test", quiet)
	w.svc.Register(r)
	rctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); r.Wait() })
	r.Start(rctx)
	return w
}

// wait returns the task once it is done.
func (w *world) wait(t *testing.T, tk *api.Task) *api.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for {
		if cur, ok := state.Get[*api.Task](w.st, tk.Metadata.ID); ok {
			if api.TaskDone(cur.State) {
				return cur
			}
			rev = cur.Metadata.Revision
		}
		if _, err := w.st.Cache.WaitChange(ctx, api.KindTask, tk.Metadata.ID, rev); err != nil {
			t.Fatalf("task %s (%s): %v", tk.Op, tk.Metadata.ID, err)
		}
	}
}

// answerPower makes the fake hosts report the state each power action
// leads to, and define report the VM off.
func (w *world) answerPower() {
	var mu sync.Mutex
	seq := uint64(0)
	next := func() uint64 { mu.Lock(); defer mu.Unlock(); seq++; return seq }
	w.hosts.On["Define"] = func(c hoststest.Call) ([]any, error) {
		return []any{api.AgentVMState{ID: c.VM, PowerState: api.PowerOff, Seq: next()}}, nil
	}
	to := map[string]string{api.ActionStart: api.PowerOn, api.ActionResume: api.PowerOn, api.ActionReset: api.PowerOn,
		api.ActionStop: api.PowerOff, api.ActionSuspend: api.PowerSuspended}
	w.hosts.On["Power"] = func(c hoststest.Call) ([]any, error) {
		return []any{api.AgentVMState{ID: c.VM, PowerState: to[c.Args[1].(api.PowerRequest).Action], Seq: next()}}, nil
	}
}

func createReq(name string, cpus int) *api.VMCreateRequest {
	return &api.VMCreateRequest{Name: name, CPUs: cpus, Memory: 512 << 20, Disks: []api.DiskRequest{{Size: 1 << 30}}}
}

// create makes a VM through the service and waits for its task to succeed.
func (w *world) create(t *testing.T, req *api.VMCreateRequest) *api.VM {
	t.Helper()
	tk, err := w.svc.Create(context.Background(), req)
	if err != nil {
		t.Fatalf("create vm %s: %v", req.Name, err)
	}
	if tk = w.wait(t, tk); tk.State != api.TaskSucceeded {
		t.Fatalf("create vm %s: %s: %v", req.Name, tk.State, tk.Error)
	}
	return w.vm(t, tk.Target.ID)
}

func (w *world) vm(t *testing.T, id string) *api.VM {
	t.Helper()
	vm, err := state.Read[*api.VM](context.Background(), w.st, id)
	if err != nil {
		t.Fatal(err)
	}
	return vm
}

// A VM created to power on goes to the one host with room for it to run
// (h1 has 1 vCPU, the VM needs 2): h2 is given its definition, gets it
// again with the power-on, and starts it. The VM ends ready and on, on
// h2, its disk on the datastore and a MAC on the only port group.
func TestCreateDefinesOnTheChosenHostThenPowersOn(t *testing.T) {
	w := newWorld(t)
	w.answerPower()
	req := createReq("web", 2)
	req.PowerOn = true
	vm := w.create(t, req)

	calls := w.hosts.Calls()
	if got := strings.Join(w.hosts.Methods(), ","); got != "Define,Define,Power" {
		t.Fatalf("host calls: %s", got)
	}
	for _, c := range calls {
		if c.Host != "h2" || c.VM != vm.Metadata.ID {
			t.Errorf("%s went to host %q for vm %q, want h2 and %s", c.Method, c.Host, c.VM, vm.Metadata.ID)
		}
	}
	cfg := calls[0].Args[0].(hypervisor.VMConfig)
	if cfg.CPUs != 2 || len(cfg.Disks) != 1 || !strings.HasPrefix(cfg.Disks[0].Path, "/srv/ds1/web-") || len(cfg.NICs) != 1 || cfg.NICs[0].MAC == "" {
		t.Errorf("definition given to the host: %+v", cfg)
	}
	if pr := calls[2].Args[1].(api.PowerRequest); pr.Action != api.ActionStart {
		t.Errorf("power call: %+v", pr)
	}
	if vm.Spec.Host.ID != w.h2.Metadata.ID || vm.Status.Phase != api.PhaseReady || vm.Status.PowerState != api.PowerOn {
		t.Errorf("vm after create: host %s, phase %s, power %s", vm.Spec.Host.ID, vm.Status.Phase, vm.Status.PowerState)
	}
	if asked := w.ha.hostsAsked(); len(asked) != 1 || asked[0] != "h2" {
		t.Errorf("HA admission asked about %v, want h2", asked)
	}
}

// A create whose define fails leaves nothing: the host is told to forget
// the VM (forced), the VM is gone from the store, its name is free again,
// and the task says what failed.
func TestFailedDefineUndoesTheCreate(t *testing.T) {
	w := newWorld(t)
	w.hosts.On["Define"] = func(hoststest.Call) ([]any, error) {
		return nil, api.Errorf(api.ErrUnprocessable, "datastore ds1 is full")
	}
	tk, err := w.svc.Create(context.Background(), createReq("db", 1))
	if err != nil {
		t.Fatal(err)
	}
	tk = w.wait(t, tk)
	if tk.State != api.TaskFailed || tk.Error == nil || !strings.HasPrefix(tk.Error.Message, "create vm db on host") ||
		!strings.HasSuffix(tk.Error.Message, "datastore ds1 is full") {
		t.Fatalf("create with a failing define: %s %+v", tk.State, tk.Error)
	}
	if got := strings.Join(w.hosts.Methods(), ","); got != "Define,Undefine" {
		t.Fatalf("host calls: %s", got)
	}
	if c := w.hosts.Calls()[1]; c.VM != tk.Target.ID || c.Args[1] != true {
		t.Errorf("undefine: %+v", c)
	}
	if _, err := state.Read[*api.VM](context.Background(), w.st, tk.Target.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("the VM of the failed create is still in the store: %v", err)
	}
	delete(w.hosts.On, "Define")
	w.create(t, createReq("db", 1)) // the name is free again
}

// A power-on that does not fit names what is short: checked when asked
// (nothing is queued), and again by the task, which holds the room (a
// task queued without the check fails the same way and calls no host).
// HA admission has the last word, on the VM's own host.
func TestPowerOnRefusedByAdmissionNamesWhatIsShort(t *testing.T) {
	w := newWorld(t)
	w.answerPower()
	big := createReq("big", 2)
	big.Host = "h1" // registered off: a powered-off VM takes no room
	vm := w.create(t, big)
	before := len(w.hosts.Calls())

	_, err := w.svc.Power(context.Background(), vm, w.h1, api.PowerRequest{Action: api.ActionStart})
	short := "cannot power on vm big: host h1 has room for 1 vCPU and 1 GiB of memory, the VM needs 2 vCPU and 512 MiB"
	if !errors.Is(err, api.ErrUnprocessable) || err.Error() != short {
		t.Fatalf("power-on on a host too small: %v", err)
	}
	ctx := context.Background()
	tk, err := w.sub.Submit(ctx, w.st.Store.Txn(), tasks.New(ctx, api.OpVMPower(api.ActionStart), vm, api.PowerRequest{Action: api.ActionStart}))
	if err != nil {
		t.Fatal(err)
	}
	if tk = w.wait(t, tk); tk.State != api.TaskFailed || tk.Error.Message != short {
		t.Fatalf("power-on task on a host too small: %s %+v", tk.State, tk.Error)
	}
	if calls := w.hosts.Calls()[before:]; len(calls) != 0 {
		t.Fatalf("a refused power-on called the host: %+v", calls)
	}

	small := w.create(t, createReq("small", 1))
	h, _ := state.Get[*api.Host](w.st, small.Spec.Host.ID)
	refusal := api.Errorf(api.ErrUnprocessable, "cannot power on vm small: HA could not restart it: 1 vCPU short")
	w.ha.set(refusal)
	if _, err := w.svc.Power(ctx, small, h, api.PowerRequest{Action: api.ActionStart}); err != refusal {
		t.Fatalf("power-on HA refuses: %v", err)
	}
	if asked := w.ha.hostsAsked(); len(asked) != 1 || asked[0] != h.Metadata.Name {
		t.Fatalf("HA asked about %v, want %s", asked, h.Metadata.Name)
	}
}

// Power actions from the wrong state are refused with the server's
// messages, when asked and by a task that finds the state changed, and
// bad requests before any VM is looked at.
func TestPowerActionsRefusedInTheWrongState(t *testing.T) {
	w := newWorld(t)
	w.answerPower()
	ctx := context.Background()
	vm := w.create(t, createReq("app", 1))
	h, _ := state.Get[*api.Host](w.st, vm.Spec.Host.ID)
	with := func(power string) *api.VM {
		v := *vm
		v.Status.PowerState = power
		return &v
	}
	for _, c := range []struct {
		power, action, want string
	}{
		{api.PowerOff, api.ActionStop, "vm app is already off"},
		{api.PowerOff, api.ActionSuspend, "cannot suspend vm app: it is off (needs on)"},
		{api.PowerOn, api.ActionStart, "vm app is already on"},
		{api.PowerOn, api.ActionResume, "vm app is already on"},
		{api.PowerSuspended, api.ActionReset, "cannot reset vm app: it is suspended (needs on)"},
		{api.PowerSuspended, api.ActionSuspend, "vm app is already suspended"},
	} {
		_, err := w.svc.Power(ctx, with(c.power), h, api.PowerRequest{Action: c.action})
		if !errors.Is(err, api.ErrConflict) || err.Error() != c.want {
			t.Errorf("%s a VM %s: %v, want %q", c.action, c.power, err, c.want)
		}
	}
	tmpl := with(api.PowerOff)
	tmpl.Spec.Template = true
	if _, err := w.svc.Power(ctx, tmpl, h, api.PowerRequest{Action: api.ActionStart}); err == nil ||
		err.Error() != "vm app is a template: it does not run; clone it (vdc vm create NEW --from-template app)" {
		t.Errorf("start a template: %v", err)
	}
	for req, want := range map[api.PowerRequest]string{
		{Action: "reboot"}:                             `power action must be one of reset, resume, start, stop, suspend, got "reboot"`,
		{Action: api.ActionStart, Force: true}:         "force applies only to stop",
		{Action: api.ActionStop, TimeoutSeconds: 3601}: "timeoutSeconds must be between 0 (default 1m0s) and 3600, got 3601",
	} {
		if err := vms.CheckPowerRequest(req); !errors.Is(err, api.ErrInvalid) || err.Error() != want {
			t.Errorf("power request %+v: %v, want %q", req, err, want)
		}
	}
	// Off since the request was checked: the stop task says so, and does
	// not call the host.
	before := len(w.hosts.Calls())
	tk, err := w.sub.Submit(ctx, w.st.Store.Txn(), tasks.New(ctx, api.OpVMPower(api.ActionStop), vm, api.PowerRequest{Action: api.ActionStop}))
	if err != nil {
		t.Fatal(err)
	}
	if tk = w.wait(t, tk); tk.State != api.TaskFailed || tk.Error.Message != "vm app is already off" {
		t.Fatalf("stop task on a VM off: %s %+v", tk.State, tk.Error)
	}
	if calls := w.hosts.Calls()[before:]; len(calls) != 0 {
		t.Fatalf("a refused stop called the host: %+v", calls)
	}
}

// Deleting a VM: refused while it runs or linked clones depend on it;
// then the host forgets it and the files its snapshots kept, and the VM
// leaves the store.
func TestDeleteRemovesTheVMFromHostAndStore(t *testing.T) {
	w := newWorld(t)
	w.answerPower()
	ctx := context.Background()
	req := createReq("old", 1)
	req.PowerOn = true
	vm := w.create(t, req)
	if err := w.svc.PlanDelete(vm, false); err == nil || err.Error() != "vm old is on: stop it first, or delete with force" {
		t.Fatalf("delete a running VM: %v", err)
	}
	w.storage.dependents = []string{"clone1"}
	if err := w.svc.PlanDelete(vm, true); err == nil || err.Error() != "cannot delete vm old: linked clones depend on its disks: clone1" {
		t.Fatalf("delete a VM with linked clones: %v", err)
	}
	w.storage.dependents = nil
	w.storage.files = []string{"/srv/ds1/old/snap1.qcow2"}
	if err := w.svc.PlanDelete(vm, true); err != nil || vm.Status.Phase != api.PhaseDeleting {
		t.Fatalf("forced delete: %v, phase %s", err, vm.Status.Phase)
	}
	before := len(w.hosts.Calls())
	tk, err := w.sub.Submit(ctx, w.st.Store.Txn(), w.svc.DeleteTask(ctx, vm, true))
	if err != nil {
		t.Fatal(err)
	}
	if tk = w.wait(t, tk); tk.State != api.TaskSucceeded {
		t.Fatalf("delete: %s %+v", tk.State, tk.Error)
	}
	calls := w.hosts.Calls()[before:]
	if len(calls) != 2 || calls[0].Method != "Undefine" || calls[0].Args[1] != true ||
		calls[1].Method != "RemoveFiles" || strings.Join(calls[1].Args[0].([]string), ",") != "/srv/ds1/old/snap1.qcow2" {
		t.Fatalf("host calls of the delete: %+v", calls)
	}
	if _, err := state.Read[*api.VM](ctx, w.st, vm.Metadata.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("deleted VM still in the store: %v", err)
	}
}

// A running VM grows by a vm.hot-add task, within the room it started
// with and never down; the host's answer sets its new size.
func TestHotAddGrowsARunningVM(t *testing.T) {
	w := newWorld(t)
	w.answerPower()
	ctx := context.Background()
	req := createReq("grow", 1)
	req.MaxCPUs, req.PowerOn = 3, true
	vm := w.create(t, req)

	two := 2
	four := 4
	if _, err := w.svc.PlanUpdate(w.vm(t, vm.Metadata.ID), &api.VMUpdateRequest{CPUs: &four}); err == nil ||
		err.Error() != "maxCpus (3) is below the VM's 4 vCPUs: the most it can grow to while it runs is at least what it has" {
		t.Fatalf("grow past max-cpus: %v", err)
	}
	upd := w.vm(t, vm.Metadata.ID)
	plan, err := w.svc.PlanUpdate(upd, &api.VMUpdateRequest{CPUs: &two})
	if err != nil {
		t.Fatal(err)
	}
	if upd.Spec.CPUs != 1 {
		t.Fatalf("the spec of a running VM took the new size before the host added it: %d vCPUs", upd.Spec.CPUs)
	}
	w.hosts.On["HotAdd"] = func(hoststest.Call) ([]any, error) {
		return []any{hypervisor.HotAddResult{Hardware: api.VMHardware{CPUs: 1, MemoryBytes: 512 << 20, HotCPUs: []api.HotCPU{{}}}, Guest: "1 vCPU online"}}, nil
	}
	tk := plan.Task(ctx, upd)
	if tk.Op != api.OpVMHotAdd {
		t.Fatalf("the task of a hot-add: %s", tk.Op)
	}
	if tk, err = w.sub.Submit(ctx, w.st.Store.Txn().Update(vm, upd), tk); err != nil {
		t.Fatal(err)
	}
	if tk = w.wait(t, tk); tk.State != api.TaskSucceeded {
		t.Fatalf("hot-add: %s %+v", tk.State, tk.Error)
	}
	calls := w.hosts.Calls()
	if c := calls[len(calls)-1]; c.Method != "HotAdd" || c.Host != "h2" || c.Args[1].(agent.HotAddRequest).CPUs != 2 {
		t.Fatalf("last host call: %+v", c)
	}
	if got := w.vm(t, vm.Metadata.ID); got.Spec.CPUs != 2 {
		t.Fatalf("after the hot-add the VM has %d vCPUs", got.Spec.CPUs)
	}
	upd = w.vm(t, vm.Metadata.ID)
	one := 1
	if _, err := w.svc.PlanUpdate(upd, &api.VMUpdateRequest{CPUs: &one}); !errors.Is(err, api.ErrConflict) || !strings.HasPrefix(err.Error(),
		"vm grow is on with 2 vCPUs: vCPUs can be added while it runs, not removed") {
		t.Fatalf("shrink a running VM: %v", err)
	}
}
