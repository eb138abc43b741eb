package ha_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/state"
)

// A failed host's protected, running VMs restart on the other hosts, the
// higher priority first and each once the one above runs; a host in
// maintenance takes none; VMs with HA disabled and powered-off ones stay.
func TestFailoverRestartsProtectedVMsByPriority(t *testing.T) {
	w := newWorld(t, "h1", "h2", "h3")
	names := map[string]string{}
	vms := map[string]*api.VM{}
	for _, v := range []struct{ name, power, prio string }{
		{"lo", api.PowerOn, api.HAPriorityLow}, {"med", api.PowerOn, ""}, {"hi", api.PowerOn, api.HAPriorityHigh},
		{"nope", api.PowerOn, api.HAPriorityDisabled}, {"off", api.PowerOff, api.HAPriorityHigh},
	} {
		vms[v.name] = w.vm(v.name, "h1", v.power, v.prio, 1<<30)
		names[vms[v.name].Metadata.ID] = v.name
	}
	w.update("h2", func(h *api.Host) { h.Spec.Maintenance = true })
	w.fail("h1")

	fo := w.failover("h1")
	if fo.State != api.TaskSucceeded || fo.Message != "host h1 failed; 3 of 3 restarted" {
		t.Fatalf("failover: %s %q %v", fo.State, fo.Message, fo.Error)
	}
	if got, want := w.started(names), []string{"hi@h3", "med@h3", "lo@h3"}; !slices.Equal(got, want) {
		t.Errorf("powered on: %v, want %v (by priority, none on the host in maintenance)", got, want)
	}
	for _, n := range []string{"hi", "med", "lo"} {
		vm, _ := state.Get[*api.VM](w.st, vms[n].Metadata.ID)
		if w.hostOf(vm) != "h3" || vm.Status.PowerState != api.PowerOn || !strings.Contains(vm.Status.Message, "restarted by HA on host h3: host h1 failed") {
			t.Errorf("vm %s: on %s, %s, %q", n, w.hostOf(vm), vm.Status.PowerState, vm.Status.Message)
		}
	}
	for _, n := range []string{"nope", "off"} {
		if h := w.hostOf(vms[n]); h != "h1" {
			t.Errorf("vm %s (not protected, or off) moved to %s", n, h)
		}
	}
	r := w.restarts()
	if len(r) != 3 || !r["hi"][0].Finished.Before(*r["med"][0].Started) || !r["med"][0].Finished.Before(*r["lo"][0].Started) {
		t.Errorf("restart tasks: %v", r)
	}
}

// A VM that fits on no other host (too big, or only a host of another
// hypervisor has room) gets failed restart tasks that say why, a few
// attempts; the failover restarts the others and fails naming it.
func TestFailoverSaysWhatFitsNowhere(t *testing.T) {
	w := newWorld(t, "h1", "h2", "other")
	w.update("other", func(h *api.Host) { h.Status.Driver, h.Status.MemoryBytes = "other", 64<<30 })
	big := w.vm("big", "h1", api.PowerOn, "", 12<<30)
	w.vm("small", "h1", api.PowerOn, "", 1<<30)
	w.fail("h1")

	fo := w.failover("h1")
	if fo.State != api.TaskFailed || fo.Error == nil || fo.Error.Code != api.CodeUnprocessable ||
		!strings.HasPrefix(fo.Error.Message, "host h1 failed; 1 of 2 restarted: big (no host has room") {
		t.Fatalf("failover: %s %+v", fo.State, fo.Error)
	}
	r := w.restarts()
	if len(r["big"]) != 5 {
		t.Errorf("%d restart tasks for big, want 5 attempts", len(r["big"]))
	}
	for _, tk := range r["big"] {
		if tk.State != api.TaskFailed || !strings.Contains(tk.Error.Message, "host h1 failed, and vm big fits on no other host") {
			t.Errorf("restart of big: %s %+v", tk.State, tk.Error)
		}
	}
	if h := w.hostOf(big); h != "h1" {
		t.Errorf("big moved to %s", h)
	}
	if len(r["small"]) != 1 || r["small"][0].State != api.TaskSucceeded || w.hostOf(&api.VM{Metadata: api.ObjectMeta{ID: r["small"][0].Target.ID}}) != "h2" {
		t.Errorf("restart of small: %+v", r["small"])
	}
}

// A host that comes back during the failover keeps the VMs not restarted
// yet, and the failover says so; one back before it starts loses none.
func TestFailoverStopsWhenTheHostComesBack(t *testing.T) {
	w := newWorld(t, "h1", "h2")
	hi := w.vm("hi", "h1", api.PowerOn, api.HAPriorityHigh, 1<<30)
	lo := w.vm("lo", "h1", api.PowerOn, api.HAPriorityLow, 1<<30)
	w.fail("h1")
	// h1 heartbeats again while hi starts on h2.
	start := w.fake.On["Power"]
	w.fake.On["Power"] = func(c hoststest.Call) ([]any, error) {
		if c.VM == hi.Metadata.ID {
			w.update("h1", func(h *api.Host) { h.Status.Connection, h.Status.FailedAt = api.HostConnected, time.Time{} })
		}
		return start(c)
	}
	fo := w.failover("h1")
	if fo.State != api.TaskFailed || fo.Error.Code != api.CodeConflict ||
		fo.Error.Message != "host h1 failed; 1 of 2 restarted: the host came back; lo (not tried)" {
		t.Fatalf("failover: %s %+v", fo.State, fo.Error)
	}
	if w.hostOf(hi) != "h2" || w.hostOf(lo) != "h1" {
		t.Errorf("hi on %s, lo on %s; want h2 and h1", w.hostOf(hi), w.hostOf(lo))
	}

	calls := len(w.fake.Calls())
	fo = w.failover("h1") // back before it started
	if fo.State != api.TaskSucceeded || fo.Message != "host h1 failed; no protected VM to restart; the host came back" {
		t.Errorf("failover of a host that is back: %s %q %+v", fo.State, fo.Message, fo.Error)
	}
	if n := len(w.fake.Calls()); n != calls {
		t.Errorf("the failover of a host that is back called the hosts %d times", n-calls)
	}
}

// HA takes a HostFailed by declaring the host failed and queuing its
// failover, in one write; a second one about the same host as it was
// (the cache not showing the first yet) is refused and queues nothing.
func TestHostFailedDeclaresTheHostFailedOnce(t *testing.T) {
	w := newIdleWorld(t, "h1", "h2") // the failover stays queued, as HA made it
	bus := hosts.NewBus()
	w.svc.Subscribe(bus)
	ctx := context.Background()
	silent := w.hosts["h1"]
	if err := bus.Publish(ctx, hosts.HostFailed{Host: silent, Silent: 12 * time.Second}); err != nil {
		t.Fatal(err)
	}
	h, err := state.Read[*api.Host](ctx, w.st, silent.Metadata.ID)
	if err != nil || h.Status.FailedAt.IsZero() || h.Status.Connection != api.HostDisconnected {
		t.Fatalf("h1 after HostFailed: %+v %v", h.Status, err)
	}
	if err := bus.Publish(ctx, hosts.HostFailed{Host: silent, Silent: 13 * time.Second}); err == nil || !strings.Contains(err.Error(), "declare host h1 failed") {
		t.Errorf("a second HostFailed of the same host: %v", err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	fos := state.List(w.st, func(t *api.Task) bool { return t.Op == api.OpHostFailover })
	if len(fos) != 1 || fos[0].Owner != "ha" || fos[0].Target.ID != silent.Metadata.ID || !strings.HasPrefix(fos[0].Message, "host h1 failed: no heartbeat for 12s") {
		t.Fatalf("failover tasks: %d, first %+v", len(fos), *fos[0])
	}
}

// Of the VMs a host reports, those HA restarted elsewhere meanwhile are
// dropped, unless a task still works on them (a migration needs the copy).
func TestReportedVMsThatRunElsewhereAreDropped(t *testing.T) {
	w := newWorld(t, "h1", "h2")
	bus := hosts.NewBus()
	w.svc.Subscribe(bus)
	moved := w.vm("moved", "h2", api.PowerOn, "", 1<<30)
	busy := w.vm("busy", "h2", api.PowerOn, "", 1<<30)
	here := w.vm("here", "h1", api.PowerOn, "", 1<<30)
	tk := &api.Task{Metadata: api.ObjectMeta{ID: "t-busy"}, Op: api.OpVMMigrate, State: api.TaskRunning,
		Target: api.TaskTarget{Kind: api.KindVM, ID: busy.Metadata.ID, Name: "busy"}}
	w.create(tk)
	reply := &hosts.Reply{}
	err := bus.Publish(context.Background(), hosts.VMsReported{Host: w.hosts["h1"], Reply: reply,
		VMs: []api.AgentVMState{{ID: moved.Metadata.ID}, {ID: busy.Metadata.ID}, {ID: here.Metadata.ID}, {ID: "unknown"}}})
	if err != nil || !slices.Equal(reply.Drop, []string{moved.Metadata.ID}) {
		t.Errorf("dropped %v (%v), want only the VM that runs on h2 with no task on it", reply.Drop, err)
	}
}

// A host gets the HA settings it lacks: the cluster's, with the leases of
// the protected VMs it runs, and nothing more while its generation is
// current.
func TestHostsGetTheirHASettings(t *testing.T) {
	w := newWorld(t, "h1")
	bus := hosts.NewBus()
	w.svc.Subscribe(bus)
	vm := w.vm("vm1", "h1", api.PowerOn, "", 1<<30)
	w.vm("nope", "h1", api.PowerOn, api.HAPriorityDisabled, 1<<30)
	reply := &hosts.Reply{}
	if err := bus.Publish(context.Background(), hosts.HASettings{Host: w.hosts["h1"], Reply: reply}); err != nil {
		t.Fatal(err)
	}
	got := reply.HA
	if got == nil || !got.Enabled || got.Gen == "" || len(got.Protected) != 1 || got.Protected[0].ID != vm.Metadata.ID ||
		!strings.HasPrefix(got.Protected[0].Lease, "/srv/shared/") {
		t.Fatalf("settings: %+v", got)
	}
	again := &hosts.Reply{}
	_ = bus.Publish(context.Background(), hosts.HASettings{Host: w.hosts["h1"], Gen: got.Gen, Reply: again})
	if again.HA != nil {
		t.Errorf("settings sent again to a host that has them: %+v", again.HA)
	}
}
