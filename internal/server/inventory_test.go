package server_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func TestInventoryCRUDAndInUse(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	// Update: rename and change settings; the VM shows the new names.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB"), Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	newName, ratio := "prod", 2.5
	d.run(d.c.Update(ctx, api.KindCluster, "cluster1", api.ClusterUpdateRequest{Name: &newName, CPUOvercommit: &ratio}, 0))
	cl, err := client.Get[*api.Cluster](ctx, d.c, api.KindCluster, "prod")
	if err != nil || cl.Spec.CPUOvercommit != 2.5 || cl.Status.VMs != 1 || cl.Status.Hosts != 1 {
		t.Fatalf("cluster after update: %+v %v", cl, err)
	}
	if got := d.vm("v1").Spec.Cluster.Name; got != "prod" {
		t.Fatalf("VM still shows cluster %q after the rename", got)
	}
	bad := 0.0
	if _, err := d.c.Update(ctx, api.KindCluster, "prod", api.ClusterUpdateRequest{MemoryOvercommit: &bad}, 0); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("overcommit 0: %v", err)
	}
	vlan := 5000
	if _, err := d.c.Update(ctx, api.KindPortGroup, "vm-network", api.PortGroupUpdateRequest{VLAN: &vlan}, 0); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("VLAN 5000: %v", err)
	}
	ds, err := client.Get[*api.Datastore](ctx, d.c, api.KindDatastore, "datastore1")
	if err != nil || ds.Status.ProvisionedBytes != api.MustSize("1GiB") || len(ds.Status.Hosts) != 1 || ds.Status.CapacityBytes == 0 {
		t.Fatalf("datastore status: %+v %v", ds.Status, err)
	}
	pg, _ := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "vm-network")
	if pg.Status.Ports != 1 {
		t.Fatalf("port group ports: %d", pg.Status.Ports)
	}
	// Nothing that is in use can be deleted; the error says by what.
	for kind, name := range map[string]string{api.KindDatacenter: "dc1", api.KindCluster: "prod", api.KindDatastore: "datastore1", api.KindPortGroup: "vm-network", api.KindHost: "host-1"} {
		_, err := d.c.Delete(ctx, kind, name, nil)
		if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "still has") {
			t.Errorf("delete %s %s in use: %v", kind, name, err)
		}
	}
	d.run(d.c.Delete(ctx, api.KindVM, "v1", nil))
	d.run(d.c.Delete(ctx, api.KindPortGroup, "vm-network", nil))
	d.run(d.c.Delete(ctx, api.KindDatastore, "datastore1", nil))
	if _, err := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "vm-network"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("deleted port group: %v", err)
	}
	if _, err := d.c.Delete(ctx, api.KindVM, "nope", nil); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("delete unknown VM: %v", err)
	}
	if _, err := d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "rel", Path: "relative/path"}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("relative datastore path: %v", err)
	}
}

func TestTasksAreRecordedAndWaitable(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	task, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: "t1", CPUs: 1, Memory: api.MustSize("64MiB"), PowerOn: true})
	if err != nil {
		t.Fatal(err)
	}
	if task.State != api.TaskQueued || task.Owner != "admin" || task.Target.Name != "t1" || task.Metadata.Created.IsZero() {
		t.Fatalf("new task: %+v", task)
	}
	var seen []string
	final, err := d.c.WaitTask(ctx, task.Metadata.ID, func(t *api.Task) { seen = append(seen, t.State) })
	if err != nil || final.State != api.TaskSucceeded || final.Started == nil || final.Finished == nil || final.Progress != 100 {
		t.Fatalf("final task: %+v %v", final, err)
	}
	if len(seen) == 0 || seen[len(seen)-1] != api.TaskSucceeded {
		t.Fatalf("progress saw %v", seen)
	}
	list, err := d.c.ListTasks(ctx, client.TaskQuery{Target: "t1"})
	if err != nil || len(list) != 1 || list[0].Metadata.ID != task.Metadata.ID {
		t.Fatalf("task ls --target: %v %v", list, err)
	}
	// A failed task says why.
	_, err = d.c.Delete(ctx, api.KindVM, "t1", url.Values{"force": {"maybe"}})
	if !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("force=maybe: %v", err)
	}
	if _, err := d.c.GetTask(ctx, "no-such-task"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("unknown task: %v", err)
	}
}

func TestEventsStreamTasksAndPowerChanges(t *testing.T) {
	d := newDC(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events := make(chan api.Event, 100)
	go func() {
		// From the first event on: however late the stream opens, it
		// replays what came after.
		_ = d.c.Events(ctx, client.EventQuery{After: 1}, func(e api.Event) error {
			events <- e
			return nil
		})
	}()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "e1", CPUs: 1, Memory: api.MustSize("64MiB"), PowerOn: true}))
	var gotTaskDone, gotPower, gotCreated bool
	var lastSeq int64
	for !(gotTaskDone && gotPower && gotCreated) {
		select {
		case e := <-events:
			if e.Seq <= lastSeq {
				t.Fatalf("event sequence went back: %d after %d", e.Seq, lastSeq)
			}
			lastSeq = e.Seq
			switch {
			case e.Type == api.EventTask && e.Task != nil && e.Task.Op == "vm.create" && e.Task.State == api.TaskSucceeded:
				gotTaskDone = true
			case e.Type == api.EventVMPower && e.Name == "e1" && e.To == api.PowerOn:
				gotPower = true
			case e.Type == api.EventCreated && e.Kind == api.KindVM && e.Name == "e1":
				gotCreated = true
			}
		case <-ctx.Done():
			t.Fatalf("missing events: task done %v, power %v, created %v", gotTaskDone, gotPower, gotCreated)
		}
	}
	// Resuming from a sequence number replays what came after it.
	replay := make(chan api.Event, 100)
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	go func() {
		_ = d.c.Events(rctx, client.EventQuery{After: 1, Types: []string{api.EventVMPower}}, func(e api.Event) error {
			replay <- e
			return nil
		})
	}()
	select {
	case e := <-replay:
		if e.Type != api.EventVMPower || e.Name != "e1" {
			t.Fatalf("replayed %+v", e)
		}
	case <-rctx.Done():
		t.Fatal("no replay after Last-Event-ID")
	}
}

func TestJoinTokensAreLimited(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	tok, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	d.token = tok.Token
	d.startAgent("h1")
	d.waitHosts(1)
	// The token is spent: a second host cannot join with it.
	code, body := rawCall(t, d, "POST", "/api/v1/agent/join", `{"token":"`+tok.Token+`","name":"h2","csr":"x"}`, "")
	if code != 401 || !strings.Contains(body, "used up") {
		t.Fatalf("second join with a one-use token: %d %s", code, body)
	}
	code, body = rawCall(t, d, "POST", "/api/v1/agent/join", `{"token":"vdc1.nope.`+strings.Repeat("0", 64)+`","name":"h3","csr":"x"}`, "")
	if code != 401 {
		t.Fatalf("unknown token: %d %s", code, body)
	}
	if _, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: -1}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("negative uses: %v", err)
	}
	hs, _ := client.List[*api.Host](ctx, d.c, api.KindHost, nil)
	if len(hs) != 1 {
		t.Fatalf("refused joins created hosts: %d", len(hs))
	}
}

// A cancel that lands while the runner takes a task up must not leave the
// task queued forever: every task ends, canceled or done.
func TestCancelRacingTheRunnerEndsEveryTask(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "r", CPUs: 1, Memory: api.MustSize("64MiB"), PowerOn: true}))
	var tasks []*api.Task
	for i := 0; i < 150; i++ {
		tk, err := d.c.Power(ctx, "r", api.PowerRequest{Action: api.ActionReset})
		if err != nil {
			t.Fatal(err)
		}
		_ = d.c.Do(ctx, client.Request{Method: "POST", Path: "/tasks/" + tk.Metadata.ID + "/cancel"}, nil)
		tasks = append(tasks, tk)
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i, tk := range tasks {
		final, err := d.c.WaitTask(wctx, tk.Metadata.ID, nil)
		if wctx.Err() != nil {
			t.Fatalf("task %d of %d never ended: %+v", i, len(tasks), final)
		}
		_ = err // canceled or succeeded: both are an end
	}
}
