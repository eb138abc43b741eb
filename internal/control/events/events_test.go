package events

import (
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

var now = time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)

func vm(name, power, msg string) *api.VM {
	return &api.VM{Metadata: api.ObjectMeta{ID: "vm-1", Name: name}, Status: api.VMStatus{PowerState: power, Message: msg}}
}

func host(conn string, failedAt time.Time) *api.Host {
	return &api.Host{Metadata: api.ObjectMeta{ID: "h-1", Name: "h1"}, Status: api.HostStatus{Connection: conn, FailedAt: failedAt}}
}

func change(rev int64, kind, id string, prev, obj api.Object) store.Change {
	return store.Change{Rev: rev, Time: now, Kind: kind, ID: id, Prev: prev, Obj: obj}
}

// one maps a change that must say exactly one thing.
func one(t *testing.T, ch store.Change) api.Event {
	t.Helper()
	evs := Of(ch)
	if len(evs) != 1 {
		t.Fatalf("events of %s %s: got %d (%+v), want 1", ch.Kind, ch.ID, len(evs), evs)
	}
	if evs[0].Kind != ch.Kind || evs[0].ID != ch.ID || !evs[0].Time.Equal(now) {
		t.Errorf("event %+v: want kind %s, id %s, time %s", evs[0], ch.Kind, ch.ID, now)
	}
	return evs[0]
}

func TestVMPowerChange(t *testing.T) {
	e := one(t, change(5, api.KindVM, "vm-1", vm("web", api.PowerOff, ""), vm("web", api.PowerOn, "")))
	if e.Type != api.EventVMPower || e.From != api.PowerOff || e.To != api.PowerOn || e.Message != "vm web: off → on" || e.Name != "web" {
		t.Errorf("power on: %+v", e)
	}
	e = one(t, change(6, api.KindVM, "vm-1", vm("web", api.PowerOn, ""), vm("web", api.PowerOff, "guest shut down")))
	if e.Message != "vm web: on → off (guest shut down)" {
		t.Errorf("power off message: %q", e.Message)
	}
	// The first power state a VM gets, and a change that is not of power, say nothing.
	for _, ch := range []store.Change{
		change(7, api.KindVM, "vm-1", vm("web", "", ""), vm("web", api.PowerOff, "")),
		change(8, api.KindVM, "vm-1", vm("web", api.PowerOn, ""), vm("www", api.PowerOn, "")),
	} {
		if evs := Of(ch); len(evs) != 0 {
			t.Errorf("rev %d: want no event, got %+v", ch.Rev, evs)
		}
	}
}

func TestHostConnectionAndHA(t *testing.T) {
	e := one(t, change(5, api.KindHost, "h-1", host(api.HostConnected, time.Time{}), host(api.HostDisconnected, time.Time{})))
	if e.Type != api.EventHostConnection || e.From != api.HostConnected || e.To != api.HostDisconnected || e.Message != "host h1 disconnected" {
		t.Errorf("disconnect: %+v", e)
	}
	failed := now.Add(-time.Minute)
	evs := Of(change(6, api.KindHost, "h-1", host(api.HostConnected, time.Time{}), host(api.HostDisconnected, failed)))
	if len(evs) != 2 || evs[0].Type != api.EventHostConnection || evs[1].Type != api.EventHostHA ||
		evs[1].To != "failed" || evs[1].Message != "host h1 failed: HA restarts its protected VMs on the other hosts" {
		t.Fatalf("failure: %+v", evs)
	}
	e = one(t, change(7, api.KindHost, "h-1", host(api.HostConnected, failed), host(api.HostConnected, time.Time{})))
	if e.Type != api.EventHostHA || e.From != "failed" || e.To != "ok" ||
		e.Message != "host h1, declared failed at "+failed.Format(time.RFC3339)+", is back" {
		t.Errorf("back: %+v", e)
	}
}

func TestTaskStateChange(t *testing.T) {
	task := func(state string, err *api.Error) *api.Task {
		return &api.Task{Metadata: api.ObjectMeta{ID: "t-1"}, Op: "vm.migrate", State: state, Error: err,
			Target: api.TaskTarget{Kind: api.KindVM, ID: "vm-1", Name: "web"}}
	}
	e := one(t, change(5, api.KindTask, "t-1", task(api.TaskQueued, nil), task(api.TaskRunning, nil)))
	if e.Type != api.EventTask || e.Task == nil || e.Task.State != api.TaskRunning || e.Name != "web" || e.Message != "vm.migrate web: running" {
		t.Errorf("running: %+v", e)
	}
	e = one(t, change(6, api.KindTask, "t-1", task(api.TaskRunning, nil), task(api.TaskFailed, &api.Error{Message: "host h2 unreachable"})))
	if e.Message != "vm.migrate web: failed: host h2 unreachable" {
		t.Errorf("failed: %q", e.Message)
	}
	// A new task is a task event, not "created"; a deleted (expired) one says nothing.
	if e := one(t, change(7, api.KindTask, "t-2", nil, task(api.TaskQueued, nil))); e.Type != api.EventTask {
		t.Errorf("new task: %+v", e)
	}
	if evs := Of(change(8, api.KindTask, "t-1", task(api.TaskFailed, nil), nil)); len(evs) != 0 {
		t.Errorf("expired task: %+v", evs)
	}
}

func TestCreatedAndDeleted(t *testing.T) {
	pg := &api.PortGroup{Metadata: api.ObjectMeta{ID: "pg-1", Name: "lan"}}
	e := one(t, change(5, api.KindPortGroup, "pg-1", nil, pg))
	if e.Type != api.EventCreated || e.Name != "lan" || e.Message != "port group lan created" {
		t.Errorf("created: %+v", e)
	}
	e = one(t, change(6, api.KindPortGroup, "pg-1", pg, nil))
	if e.Type != api.EventDeleted || e.Name != "lan" || e.Message != "port group lan deleted" {
		t.Errorf("deleted: %+v", e)
	}
}

func TestDatastoreAlarm(t *testing.T) {
	ds := func(alarm string, free api.Size) *api.Datastore {
		return &api.Datastore{Metadata: api.ObjectMeta{ID: "ds-1", Name: "ds1"},
			Status: api.DatastoreStatus{Alarm: alarm, CapacityBytes: 100 << 30, FreeBytes: free}}
	}
	e := one(t, change(5, api.KindDatastore, "ds-1", ds("", 20<<30), ds(api.DatastoreAlarmCritical, 3<<30)))
	if e.Type != api.EventDatastoreAlarm || e.To != api.DatastoreAlarmCritical {
		t.Errorf("alarm: %+v", e)
	}
}

// powerChanges feeds the log n VM power changes from revision rev on, one
// per revision.
func powerChanges(l *Log, rev int64, n int) {
	states := []string{api.PowerOff, api.PowerOn}
	for i := 0; i < n; i++ {
		l.Observe(change(rev+int64(i), api.KindVM, "vm-1", vm("web", states[i%2], ""), vm("web", states[(i+1)%2], "")))
	}
}

func TestResumeAfterAnID(t *testing.T) {
	l := NewLog(3)
	powerChanges(l, 10, 4) // revisions 10-13; the log keeps the last 3
	// Two events of one transaction get distinct, growing IDs.
	l.Observe(change(14, api.KindHost, "h-1", host(api.HostConnected, time.Time{}), host(api.HostDisconnected, now)))
	backlog, _, cancel := l.Subscribe(0)
	cancel()
	if len(backlog) != 0 {
		t.Errorf("a new stream gets no backlog, got %d events", len(backlog))
	}
	backlog, _, cancel = l.Subscribe(12 << 10)
	defer cancel()
	if len(backlog) != 3 || backlog[0].Seq != 13<<10 || backlog[1].Seq != 14<<10 || backlog[2].Seq != 14<<10|1 ||
		backlog[0].Type != api.EventVMPower || backlog[2].Type != api.EventHostHA {
		t.Fatalf("resume after 12<<10: %+v", backlog)
	}
	backlog, _, cancel = l.Subscribe(14 << 10)
	defer cancel()
	if len(backlog) != 1 || backlog[0].Seq != 14<<10|1 {
		t.Errorf("resume after 14<<10: %+v", backlog)
	}
}

func TestNewEventsReachSubscribers(t *testing.T) {
	l := NewLog(16)
	_, ch, cancel := l.Subscribe(0)
	powerChanges(l, 20, 2)
	for _, want := range []int64{20 << 10, 21 << 10} {
		if e := <-ch; e.Seq != want {
			t.Errorf("got seq %d, want %d", e.Seq, want)
		}
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Error("the channel stays open after cancel")
	}
	cancel() // twice is harmless
}

func TestSlowSubscriberDoesNotBlockOthers(t *testing.T) {
	l := NewLog(16)
	// No deferred cancel: were Observe stuck holding the log's lock, it
	// would hang the test instead of failing it.
	_, slow, _ := l.Subscribe(0)
	_, fast, _ := l.Subscribe(0)
	observe := func(rev int64, n int) {
		t.Helper()
		done := make(chan struct{})
		go func() {
			defer close(done)
			powerChanges(l, rev, n)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Observe blocks on a subscriber that does not read")
		}
	}
	observe(1, subBuffer) // fills both buffers
	for i := 0; i < subBuffer; i++ {
		<-fast
	}
	// One more: the slow one, still full, is dropped; the fast one gets it.
	observe(subBuffer+1, 1)
	select {
	case e := <-fast:
		if e.Seq != int64(subBuffer+1)<<10 {
			t.Errorf("fast subscriber: seq %d", e.Seq)
		}
	default:
		t.Error("the fast subscriber did not get the last event")
	}
	for n := 0; ; n++ {
		select {
		case _, ok := <-slow:
			if ok {
				continue
			}
			if n != subBuffer {
				t.Errorf("the slow subscriber got %d events before being dropped, want %d", n, subBuffer)
			}
		default:
			t.Fatalf("the slow subscriber is not dropped after %d events", n)
		}
		break
	}
}
