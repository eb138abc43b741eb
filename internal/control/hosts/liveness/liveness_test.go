package liveness_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/hosts/liveness"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type world struct {
	t   *testing.T
	st  *state.State
	bus *hosts.Bus
	svc *liveness.Service
}

func newWorld(t *testing.T, hostTimeout time.Duration) *world {
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	w := &world{t: t, st: st, bus: hosts.NewBus()}
	inv := &inventory.Inventory{St: st, Tally: tally, Hosts: hoststest.New(), Tasks: &tasks.Submitter{State: st}}
	w.svc = liveness.New(liveness.Deps{State: st, Inv: inv, Bus: w.bus, Txn: st.Store.Txn, HeartbeatInterval: time.Second,
		HostTimeout: hostTimeout, AlarmLevel: func(_, _ api.Size) string { return "" }, Log: quiet})
	return w
}

func (w *world) create(o api.Object) {
	w.t.Helper()
	ctx := context.Background()
	rev, err := w.st.Store.Create(ctx, o)
	if err != nil {
		w.t.Fatal(err)
	}
	o.GetMeta().Revision = rev
	if err := w.st.Cache.Sync(ctx); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) cluster(name string, detectSeconds int) *api.Cluster {
	cl := &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}}
	if detectSeconds > 0 {
		cl.Spec.HA = &api.ClusterHA{Enabled: true, FailureDetectionSeconds: detectSeconds}
	}
	w.create(cl)
	return cl
}

func (w *world) host(name string, cl *api.Cluster) *api.Host {
	h := &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.HostSpec{Cluster: api.Ref{ID: cl.Metadata.ID}},
		Status: api.HostStatus{Connection: api.HostConnected}}
	w.create(h)
	return h
}

func (w *world) vm(name string, h *api.Host) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.VMSpec{Cluster: h.Spec.Cluster, Host: api.Ref{ID: h.Metadata.ID}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOn, StateSeq: 5}}
	w.create(vm)
	return vm
}

// waitVM returns the VM once keep accepts it.
func (w *world) waitVM(id string, keep func(*api.VM) bool) *api.VM {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		vm, ok := state.Get[*api.VM](w.st, id)
		if ok && keep(vm) {
			return vm
		}
		if _, err := w.st.Cache.WaitChange(ctx, api.KindVM, id, vm.Metadata.Revision); err != nil {
			w.t.Fatalf("vm %s: %v (last seen %+v)", id, err, vm.Status)
		}
	}
}

func admitAll(*api.Host) error { return nil }

// The leader's monitor publishes HostFailed for a host of an HA cluster
// silent past the cluster's detection time: again while no subscriber
// takes it, then never more, even while the host does not show it failed
// (the cache behind). Its VMs are shown unknown at once, though the host
// timeout is not up. A host that heartbeats in time is not published.
func TestSilentHostPublishesHostFailedOnce(t *testing.T) {
	w := newWorld(t, time.Minute)
	fast, slow := w.cluster("fast", 1), w.cluster("slow", 3)
	a, c := w.host("a", fast), w.host("c", fast)
	w.host("b", slow)
	w.host("e", fast) // taken with no write: the host is left as it was
	vmA, vmC := w.vm("on-a", a), w.vm("on-c", c)

	var mu sync.Mutex
	published := map[string]int{}
	bDone := make(chan struct{})
	hosts.On(w.bus, func(ctx context.Context, e hosts.HostFailed) error {
		mu.Lock()
		published[e.Host.Metadata.Name]++
		n := published[e.Host.Metadata.Name]
		mu.Unlock()
		switch name := e.Host.Metadata.Name; {
		case name == "a" && n == 1:
			return errors.New("not now") // judged again next time
		case name == "e":
			return nil
		case name == "b" && n == 1:
			defer close(bDone)
		}
		// Taken: declared failed, as HA does.
		return state.Update(ctx, w.st, nil, e.Host.Metadata.ID, func(h *api.Host) error {
			h.Status.FailedAt = time.Now()
			return nil
		})
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.svc.Monitor(ctx)
	// c heartbeats every 200 ms until b, the slowest, is declared failed.
	beat := time.NewTicker(200 * time.Millisecond)
	defer beat.Stop()
	for waiting := true; waiting; {
		select {
		case <-beat.C:
			if _, err := w.svc.Heartbeat(ctx, c, &api.Heartbeat{VMs: []api.AgentVMState{{ID: vmC.Metadata.ID, PowerState: api.PowerOn}}}, admitAll); err != nil {
				t.Fatal(err)
			}
		case <-bDone:
			waiting = false
		case <-time.After(30 * time.Second):
			t.Fatal("b, silent past 3 s, was never published as failed")
		}
	}
	// By then a and e, failed after 1 s, have been judged several more times.
	mu.Lock()
	got := maps.Clone(published)
	mu.Unlock()
	if got["a"] != 2 || got["b"] != 1 || got["e"] != 1 || got["c"] != 0 {
		t.Errorf("HostFailed published %v, want a twice (refused, then taken), b and e once, c never", got)
	}
	w.waitVM(vmA.Metadata.ID, func(vm *api.VM) bool { return vm.Status.PowerState == api.PowerUnknown })
	if vm, _ := state.Read[*api.VM](ctx, w.st, vmC.Metadata.ID); vm.Status.PowerState != api.PowerOn {
		t.Errorf("the VM of c, which heartbeats, is %s", vm.Status.PowerState)
	}
}

// A host silent past the host timeout is shown disconnected and its VMs
// unknown; in a cluster without HA, it is never published as failed (as
// one of an HA cluster, silent as long, is).
func TestSilentHostIsShownDisconnected(t *testing.T) {
	w := newWorld(t, 600*time.Millisecond)
	d := w.host("d", w.cluster("plain", 0))
	w.host("ha", w.cluster("ha", 2))
	vm := w.vm("on-d", d)
	var failedD atomic.Int32
	haFailed := make(chan struct{}, 1)
	hosts.On(w.bus, func(_ context.Context, e hosts.HostFailed) error {
		if e.Host.Metadata.Name == "d" {
			failedD.Add(1)
		} else {
			select {
			case haFailed <- struct{}{}:
			default:
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.svc.Monitor(ctx)
	got := w.waitVM(vm.Metadata.ID, func(vm *api.VM) bool { return vm.Status.PowerState == api.PowerUnknown })
	if got.Status.Message != "host d is disconnected" {
		t.Errorf("the VM's message: %q", got.Status.Message)
	}
	select {
	case <-haFailed:
	case <-time.After(30 * time.Second):
		t.Fatal("the host of the HA cluster was never published as failed")
	}
	if h, _ := state.Read[*api.Host](ctx, w.st, d.Metadata.ID); h.Status.Connection != api.HostDisconnected || failedD.Load() != 0 {
		t.Errorf("host d is %s; HostFailed published %d times", h.Status.Connection, failedD.Load())
	}
}

// A heartbeat records the host's state and the VMs it reports, brings back
// a failed host (HostRecovered), hands its fences and VMs to the
// subscribers and answers with what they said to drop and the HA
// settings; a heartbeat refused by admit records and publishes nothing.
func TestHeartbeatRecordsAndPublishes(t *testing.T) {
	w := newWorld(t, time.Minute)
	cl := w.cluster("c1", 10)
	h := w.host("h1", cl)
	failedAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	if err := state.Update(context.Background(), w.st, nil, h.Metadata.ID, func(h *api.Host) error {
		h.Status.Connection, h.Status.FailedAt = api.HostDisconnected, failedAt
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	vm := w.vm("vm1", h)
	var events []string
	w.bus.Subscribe(func(_ context.Context, e hosts.Event) error {
		switch e := e.(type) {
		case hosts.HostRecovered:
			events = append(events, "recovered "+e.Host.Metadata.Name+" "+e.FailedAt.Format(time.RFC3339))
		case hosts.Fenced:
			events = append(events, "fenced "+e.Records[0].VM)
		case hosts.VMsReported:
			events = append(events, "vms")
			e.Reply.Drop = append(e.Reply.Drop, "stray")
			e.Reply.DropIncoming = append(e.Reply.DropIncoming, e.Incoming...)
		case hosts.HASettings:
			events = append(events, "ha "+e.Gen)
			e.Reply.HA = &api.HostHA{Gen: "new"}
		}
		return nil
	})
	ctx := context.Background()
	if _, err := w.svc.Heartbeat(ctx, h, &api.Heartbeat{}, func(*api.Host) error { return api.Errorf(api.ErrForbidden, "revoked") }); err == nil ||
		err.Error() != "record heartbeat of host h1: revoked" || len(events) > 0 {
		t.Fatalf("refused heartbeat: %v, events %v", err, events)
	}
	hb := &api.Heartbeat{Address: "10.0.0.1:7444", CPUs: 8, HAGen: "old", Incoming: []string{"copy"},
		VMs:    []api.AgentVMState{{ID: vm.Metadata.ID, PowerState: api.PowerOff, Seq: 6}},
		Fenced: []api.FenceRecord{{VM: vm.Metadata.ID, Action: "power-off"}}}
	resp, err := w.svc.Heartbeat(ctx, h, hb, admitAll)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"recovered h1 " + failedAt.Format(time.RFC3339), "fenced " + vm.Metadata.ID, "vms", "ha old"}
	if !slices.Equal(events, want) {
		t.Errorf("events %v, want %v", events, want)
	}
	if !slices.Equal(resp.Drop, []string{"stray"}) || !slices.Equal(resp.DropIncoming, []string{"copy"}) || resp.HA == nil || resp.HA.Gen != "new" ||
		!resp.SendFull || resp.IntervalSeconds != 1 {
		t.Errorf("answer: %+v", resp)
	}
	got, _ := state.Read[*api.Host](ctx, w.st, h.Metadata.ID)
	if got.Status.Connection != api.HostConnected || !got.Status.FailedAt.IsZero() || got.Status.CPUs != 8 || got.Status.Address != "10.0.0.1:7444" {
		t.Errorf("host after the heartbeat: %+v", got.Status)
	}
	if v, _ := state.Read[*api.VM](ctx, w.st, vm.Metadata.ID); v.Status.PowerState != api.PowerOff || v.Status.StateSeq != 6 {
		t.Errorf("vm after the heartbeat: %s seq %d", v.Status.PowerState, v.Status.StateSeq)
	}
}
