package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/lease"
)

func ptr[T any](v T) *T { return &v }

// haOn turns HA on for cluster1 with a short detection time (the test
// server's heartbeat is 1 s).
func haOn(t *testing.T, d *dc, u api.ClusterHAUpdate) {
	t.Helper()
	u.Enabled = ptr(true)
	if u.FailureDetectionSeconds == nil {
		u.FailureDetectionSeconds = ptr(3)
	}
	d.run(d.c.Update(context.Background(), api.KindCluster, "cluster1", api.ClusterUpdateRequest{HA: &u}, 0))
}

func tasksOf(t *testing.T, d *dc, op string) []*api.Task {
	t.Helper()
	all, err := d.c.ListTasks(context.Background(), client.TaskQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*api.Task
	for _, tk := range all {
		if tk.Op == op {
			out = append(out, tk)
		}
	}
	return out
}

func TestHARestartsTheVMsOfAFailedHostByPriority(t *testing.T) {
	d := newDC(t, 3)
	ctx := context.Background()
	haOn(t, d, api.ClusterHAUpdate{})
	disk := []api.DiskRequest{{Size: api.MustSize("1GiB")}}
	for _, v := range []struct{ name, prio string }{{"hi", api.HAPriorityHigh}, {"med", ""}, {"lo", api.HAPriorityLow}, {"nope", api.HAPriorityDisabled}} {
		d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: v.name, CPUs: 1, Memory: api.MustSize("1GiB"), Host: "host-1",
			Disks: disk, PowerOn: true, HAPriority: v.prio}))
	}
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "off", CPUs: 1, Memory: api.MustSize("1GiB"), Host: "host-1", Disks: disk}))

	d.stopAgent("host-1") // the host dies: its VMs' leases go with it
	eventually(t, 30*time.Second, "host-1 declared failed", func() bool { return !host(t, d, "host-1").Status.FailedAt.IsZero() })
	eventually(t, 60*time.Second, "the protected VMs running on other hosts", func() bool {
		for _, n := range []string{"hi", "med", "lo"} {
			vm := d.vm(n)
			if vm.Spec.Host.Name == "host-1" || vm.Status.PowerState != api.PowerOn {
				return false
			}
		}
		return true
	})
	for _, n := range []string{"nope", "off"} {
		if vm := d.vm(n); vm.Spec.Host.Name != "host-1" {
			t.Errorf("vm %s (not protected or off) was moved to %s", n, vm.Spec.Host.Name)
		}
	}
	if msg := d.vm("hi").Status.Message; !strings.Contains(msg, "restarted by HA") || !strings.Contains(msg, "host-1 failed") {
		t.Errorf("restarted VM's message: %q", msg)
	}
	// Each restart is a task, the higher priority first.
	restarts := map[string]*api.Task{}
	for _, tk := range tasksOf(t, d, "vm.ha-restart") {
		if tk.State != api.TaskSucceeded {
			t.Errorf("restart of %s: %s %v", tk.Target.Name, tk.State, tk.Error)
		}
		restarts[tk.Target.Name] = tk
	}
	if len(restarts) != 3 {
		t.Fatalf("restart tasks: %v", restarts)
	}
	if !restarts["hi"].Finished.Before(*restarts["med"].Started) || !restarts["med"].Finished.Before(*restarts["lo"].Started) {
		t.Errorf("restart order: hi %v-%v, med %v-%v, lo %v-%v", restarts["hi"].Started, restarts["hi"].Finished,
			restarts["med"].Started, restarts["med"].Finished, restarts["lo"].Started, restarts["lo"].Finished)
	}
	eventually(t, 30*time.Second, "the failover task done", func() bool {
		fo := tasksOf(t, d, "host.failover")
		return len(fo) == 1 && fo[0].State == api.TaskSucceeded && fo[0].Owner == "ha"
	})
	if fo := tasksOf(t, d, "host.failover"); fo[0].Message != "host host-1 failed; 3 of 3 restarted" {
		t.Errorf("the failover's message: %q", fo[0].Message)
	}

	// The host comes back: it is no longer failed, and it runs nothing
	// that runs elsewhere now.
	d.startAgent("host-1")
	eventually(t, 30*time.Second, "host-1 back", func() bool {
		h := host(t, d, "host-1")
		return h.Status.Connection == api.HostConnected && h.Status.FailedAt.IsZero()
	})
	d.heartbeats(3, "host-1")
	for _, n := range []string{"hi", "med", "lo"} {
		if vm := d.vm(n); vm.Spec.Host.Name == "host-1" || vm.Status.PowerState != api.PowerOn {
			t.Errorf("after host-1 came back, vm %s is %s on %s", n, vm.Status.PowerState, vm.Spec.Host.Name)
		}
	}
	if h := host(t, d, "host-1"); h.Status.VMs != 2 {
		t.Errorf("host-1 has %d VMs, want the 2 HA left there", h.Status.VMs)
	}
}

// A VM that fits nowhere gets a failed restart task that says why, and
// the failover reports it.
func TestHARestartThatFitsNowhereSaysWhy(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	haOn(t, d, api.ClusterHAUpdate{})
	disk := []api.DiskRequest{{Size: api.MustSize("1GiB")}}
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "big", CPUs: 1, Memory: api.MustSize("10GiB"), Host: "host-1", Disks: disk, PowerOn: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "filler", CPUs: 1, Memory: api.MustSize("10GiB"), Host: "host-2", Disks: disk, PowerOn: true}))
	d.stopAgent("host-1")
	eventually(t, 30*time.Second, "a failed restart of big", func() bool {
		for _, tk := range tasksOf(t, d, "vm.ha-restart") {
			if tk.Target.Name == "big" && tk.State == api.TaskFailed && tk.Error != nil && strings.Contains(tk.Error.Message, "fits on no other host") {
				return true
			}
		}
		return false
	})
	if vm := d.vm("big"); vm.Spec.Host.Name != "host-1" {
		t.Fatalf("big moved to %s", vm.Spec.Host.Name)
	}
}

func TestHASettingsAreValidated(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	for _, u := range []api.ClusterHAUpdate{
		{FailureDetectionSeconds: ptr(1)},
		{IsolationResponse: ptr("explode")},
		{AdmissionPolicy: ptr("maybe")},
		{AdmissionPolicy: ptr(api.AdmissionPercentage)},
		{AdmissionCPUPercent: ptr(120)},
		{RestartCondition: ptr("whenever")},
		{VMFailureIntervalSecs: ptr(1)},
		{VMMaxResets: ptr(0)},
		{IsolationAddresses: &[]string{"not an address!"}},
	} {
		_, err := d.c.Update(ctx, api.KindCluster, "cluster1", api.ClusterUpdateRequest{HA: &u}, 0)
		var ae *api.Error
		if !errors.As(err, &ae) || ae.Status != 400 || !strings.HasPrefix(ae.Message, "HA: ") {
			t.Errorf("%+v: want 400 HA error, got %v", u, err)
		}
	}
	cl, err := client.Get[*api.Cluster](ctx, d.c, api.KindCluster, "cluster1")
	if err != nil || cl.Spec.HA != nil {
		t.Fatalf("bad HA settings changed the cluster: %+v %v", cl.Spec.HA, err)
	}
	haOn(t, d, api.ClusterHAUpdate{VMMonitoring: ptr(true)})
	cl, _ = client.Get[*api.Cluster](ctx, d.c, api.KindCluster, "cluster1")
	ha := cl.Spec.HA
	if !ha.Enabled || ha.FailureDetectionSeconds != 3 || ha.IsolationResponse != api.IsolationPowerOff || ha.AdmissionControl.Policy != api.AdmissionOff ||
		!ha.VMMonitoring.Enabled || ha.VMMonitoring.FailureIntervalSeconds != 30 || ha.VMMonitoring.MaxResets != 3 || ha.RestartCondition != api.RestartWhenPoweredOn {
		t.Fatalf("defaults: %+v", ha)
	}
	_, err = d.c.CreateVM(ctx, api.VMCreateRequest{Name: "x", CPUs: 1, Memory: api.MustSize("1GiB"), HAPriority: "urgent"})
	if !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("bad HA priority: %v", err)
	}
}

// Admission control keeps room to restart everything after one host
// failure: a power-on that would take that room is refused, saying why.
func TestHAAdmissionControl(t *testing.T) {
	d := newDC(t, 3) // 16 GiB each
	ctx := context.Background()
	haOn(t, d, api.ClusterHAUpdate{AdmissionPolicy: ptr(api.AdmissionHostFailures)})
	disk := []api.DiskRequest{{Size: api.MustSize("1GiB")}}
	// 3 x 10 GiB: any host's 10 GiB cannot restart on the 6 GiB left on each other.
	for i, h := range []string{"host-1", "host-2"} {
		d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v" + string(rune('1'+i)), CPUs: 1, Memory: api.MustSize("10GiB"), Host: h, Disks: disk, PowerOn: true}))
	}
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v3", CPUs: 1, Memory: api.MustSize("10GiB"), Host: "host-3", Disks: disk}))
	_, err := d.c.Power(ctx, "v3", api.PowerRequest{Action: api.ActionStart})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 422 || !strings.Contains(ae.Message, "admission control") || !strings.Contains(ae.Message, "could not restart") {
		t.Fatalf("power-on past the failover room: want 422 naming admission control, got %v", err)
	}
	if vm := d.vm("v3"); vm.Status.PowerState != api.PowerOff {
		t.Fatalf("refused VM is %s", vm.Status.PowerState)
	}
	// A VM HA does not restart still needs room kept for the others.
	d.run(d.c.Update(ctx, api.KindVM, "v3", api.VMUpdateRequest{Memory: ptr(api.MustSize("4GiB"))}, 0))
	d.run(d.c.Power(ctx, "v3", api.PowerRequest{Action: api.ActionStart}))
	// Off, admission control lets anything that fits on.
	d.run(d.c.Update(ctx, api.KindCluster, "cluster1", api.ClusterUpdateRequest{HA: &api.ClusterHAUpdate{AdmissionPolicy: ptr(api.AdmissionOff)}}, 0))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v4", CPUs: 1, Memory: api.MustSize("4GiB"), Host: "host-3", Disks: disk, PowerOn: true}))
}

// A server that restarts while its hosts are fine declares none failed,
// however long it was away: it waits a whole detection window first.
func TestHANoFalseFailoverAfterServerRestart(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	haOn(t, d, api.ClusterHAUpdate{})
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v", CPUs: 1, Memory: api.MustSize("1GiB"), Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}, PowerOn: true}))
	addr := strings.TrimPrefix(d.srv.URL(), "https://")
	d.srv.Stop()
	// The outage itself, longer than the detection time: the test's input,
	// not a wait for something to happen.
	time.Sleep(5 * time.Second)
	srv, c := startServerAt(t, d.dir, addr)
	d.srv, d.c = srv, c
	// Past a whole detection window (3 s at 1 s heartbeats) after the
	// restart, seen as heartbeats the new server took.
	d.heartbeats(6, "host-1", "host-2")
	if fo := tasksOf(t, d, "host.failover"); len(fo) > 0 {
		t.Fatalf("failover after a server restart: %s %s", fo[0].Target.Name, fo[0].Message)
	}
	for _, n := range []string{"host-1", "host-2"} {
		if h := host(t, d, n); !h.Status.FailedAt.IsZero() {
			t.Fatalf("%s failed after a server restart", n)
		}
	}
}

// leaseOf reads who holds a VM's lease on a datastore directory.
func leaseOf(t *testing.T, dsDir, vmID string) (bool, string) {
	t.Helper()
	held, who, err := lease.Held(lease.Path(dsDir, vmID))
	if err != nil {
		t.Fatal(err)
	}
	return held, who
}

// The running copy holds the lease wherever it goes: HA turned on while
// it runs, a live migration, a move of its disks.
func TestHALeaseFollowsTheRunningCopy(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	ds1 := filepath.Join(d.dir, "datastore1")
	ds2 := filepath.Join(d.dir, "datastore2")
	os.MkdirAll(ds2, 0o755)
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "datastore2", Path: ds2}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "l1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true,
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB"), Datastore: "datastore1"}}}))
	id := d.vm("l1").Metadata.ID
	if held, _ := leaseOf(t, ds1, id); held {
		t.Fatal("a VM HA does not protect holds a lease")
	}
	haOn(t, d, api.ClusterHAUpdate{})
	eventually(t, 15*time.Second, "the running VM takes its lease once HA is on", func() bool {
		held, who := leaseOf(t, ds1, id)
		return held && strings.Contains(who, "on host host-1")
	})
	migrate(t, d, "l1", api.MigrateRequest{Host: "host-2"})
	if held, who := leaseOf(t, ds1, id); !held || !strings.Contains(who, "on host host-2") {
		t.Fatalf("after a live migration the lease is held=%v by %q", held, who)
	}
	migrate(t, d, "l1", api.MigrateRequest{Datastore: "datastore2"})
	if held, who := leaseOf(t, ds2, id); !held || !strings.Contains(who, "on host host-2") {
		t.Fatalf("after the disks moved the new lease is held=%v by %q", held, who)
	}
	if held, _ := leaseOf(t, ds1, id); held {
		t.Fatal("the lease on the old datastore is still held")
	}
	// No longer protected, it keeps its lease until it stops: that only
	// ever refuses a second copy.
	d.run(d.c.Update(ctx, api.KindVM, "l1", api.VMUpdateRequest{HAPriority: ptr(api.HAPriorityDisabled)}, 0))
	d.run(d.c.Power(ctx, "l1", api.PowerRequest{Action: api.ActionStop, Force: true}))
	if held, _ := leaseOf(t, ds2, id); held {
		t.Fatal("a VM that is off still holds its lease")
	}
	d.run(d.c.Power(ctx, "l1", api.PowerRequest{Action: api.ActionStart}))
	if held, _ := leaseOf(t, ds2, id); held {
		t.Fatal("a VM HA does not protect took a lease when it started")
	}
}

// A host that hung: its VM still runs there and holds its lease, so HA
// cannot restart it elsewhere. The refused restart is a conflict (another
// copy runs), not an internal error, and the failover says it restarted
// none of them, and why, instead of succeeding silently.
func TestHAFailoverSaysWhatItCouldNotRestart(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	haOn(t, d, api.ClusterHAUpdate{})
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "hung", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true,
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	path := lease.Path(filepath.Join(d.dir, "datastore1"), d.vm("hung").Metadata.ID)
	eventually(t, 15*time.Second, "the VM's lease held", func() bool { held, _, _ := lease.Held(path); return held })
	d.stopAgent("host-1")
	// The copy on the hung host runs on: it holds the lease.
	var still *os.File
	eventually(t, 15*time.Second, "the lease taken by the copy that runs on", func() bool {
		var err error
		still, err = lease.Acquire(path, "vm hung on host host-1")
		return err == nil
	})
	defer still.Close()
	eventually(t, 30*time.Second, "a refused restart of hung", func() bool {
		for _, tk := range tasksOf(t, d, "vm.ha-restart") {
			if tk.State == api.TaskFailed {
				if tk.Error == nil || tk.Error.Code != api.CodeConflict || !strings.Contains(tk.Error.Message, "held by another running copy") {
					t.Fatalf("refused restart: %+v", tk.Error)
				}
				return true
			}
		}
		return false
	})
	// The host comes back, the VM running on it as before.
	d.startAgent("host-1")
	var fo *api.Task
	eventually(t, 60*time.Second, "the failover over", func() bool {
		tasks := tasksOf(t, d, "host.failover")
		if len(tasks) == 1 && api.TaskDone(tasks[0].State) {
			fo = tasks[0]
		}
		return fo != nil
	})
	if fo.State != api.TaskFailed || fo.Error == nil || fo.Error.Code != api.CodeConflict {
		t.Fatalf("failover that restarted nothing: %s %+v", fo.State, fo.Error)
	}
	t.Log(fo.Error.Message)
	for _, want := range []string{"0 of 1 restarted", "the host came back", "hung (", "held by another running copy"} {
		if !strings.Contains(fo.Error.Message, want) {
			t.Errorf("failover error %q does not say %q", fo.Error.Message, want)
		}
	}
	if vm := d.vm("hung"); vm.Spec.Host.Name != "host-1" {
		t.Errorf("hung moved to %s", vm.Spec.Host.Name)
	}
}
