package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func migrate(t *testing.T, d *dc, vm string, req api.MigrateRequest) api.MigrateResult {
	t.Helper()
	task := d.run(d.c.Action(context.Background(), api.KindVM, vm, "migrate", req))
	var res api.MigrateResult
	if err := json.Unmarshal(task.Result, &res); err != nil {
		t.Fatalf("result %s: %v", task.Result, err)
	}
	return res
}

func TestMigrateLiveAndCold(t *testing.T) {
	d := newDC(t, 3)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "m1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true,
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	res := migrate(t, d, "m1", api.MigrateRequest{Host: "host-2"})
	vm := d.vm("m1")
	if vm.Spec.Host.Name != "host-2" || vm.Status.PowerState != api.PowerOn || !res.Live || res.To.Name != "host-2" || res.TotalMs <= 0 {
		t.Fatalf("after a live migration: host %s, power %s, result %+v", vm.Spec.Host.Name, vm.Status.PowerState, res)
	}
	// The source host let go of it: host-1 has no VM, host-2 one.
	if h := host(t, d, "host-1"); h.Status.VMs != 0 || h.Status.UsedMemory != 0 {
		t.Fatalf("host-1 after the migration: %+v", h.Status)
	}
	d.heartbeats(2, "host-1", "host-2") // heartbeats from both hosts must not move it back
	if vm := d.vm("m1"); vm.Spec.Host.Name != "host-2" || vm.Status.PowerState != api.PowerOn {
		t.Fatalf("after some heartbeats: %s on %s", vm.Status.PowerState, vm.Spec.Host.Name)
	}
	// Powered off, it moves cold.
	d.run(d.c.Power(ctx, "m1", api.PowerRequest{Action: api.ActionStop, Force: true}))
	res = migrate(t, d, "m1", api.MigrateRequest{Host: "host-3"})
	if vm := d.vm("m1"); vm.Spec.Host.Name != "host-3" || vm.Status.PowerState != api.PowerOff || res.Live {
		t.Fatalf("cold move: %s on %s, %+v", vm.Status.PowerState, vm.Spec.Host.Name, res)
	}
	d.run(d.c.Power(ctx, "m1", api.PowerRequest{Action: api.ActionStart}))

	// Its disks alone move on its host: storage copied, no memory sent,
	// no pause.
	ds2 := filepath.Join(d.dir, "datastore2")
	os.MkdirAll(ds2, 0o755)
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "datastore2", Path: ds2}))
	eventually(t, 10*time.Second, "host-3 reaching datastore2", func() bool {
		for _, r := range host(t, d, "host-3").Status.Datastores {
			if r.Name == "datastore2" {
				return true
			}
		}
		return false
	})
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "st", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-3", PowerOn: true,
		Disks: []api.DiskRequest{{Size: api.MustSize("20GiB"), Datastore: "datastore1"}}, Labels: map[string]string{"sim.vdc.io/disk-used": "100MiB"}}))
	res = migrate(t, d, "st", api.MigrateRequest{Datastore: "datastore2"})
	if res.Datastore.Name != "datastore2" || len(res.Disks) != 1 || res.Disks[0] != "disk0" || res.DiskBytes != api.MustSize("100MiB") ||
		res.Transferred != 0 || res.Passes != 0 || res.DowntimeMs != 0 || res.From.ID != res.To.ID {
		t.Fatalf("a move of the disks alone: %+v", res)
	}

	// Refused moves change nothing.
	for name, req := range map[string]api.MigrateRequest{
		"nowhere":        {},
		"same host":      {Host: "host-3"},
		"unknown host":   {Host: "host-9"},
		"bad compress":   {Host: "host-1", Compress: "lz4"},
		"unknown disk":   {Datastore: "datastore1", Disks: []string{"disk7"}},
		"tiny bandwidth": {Host: "host-1", MaxBandwidth: 1000},
	} {
		if _, err := d.c.Action(ctx, api.KindVM, "m1", "migrate", req); err == nil {
			t.Errorf("%s: a migration was accepted", name)
		}
	}
	if vm := d.vm("m1"); vm.Spec.Host.Name != "host-3" {
		t.Fatalf("a refused migration moved the VM to %s", vm.Spec.Host.Name)
	}
}

func TestMigrationChecksTheTarget(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "big", CPUs: 1, Memory: api.MustSize("12GiB"), Host: "host-1", PowerOn: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "hog", CPUs: 1, Memory: api.MustSize("12GiB"), Host: "host-2", PowerOn: true}))
	_, err := d.c.Action(ctx, api.KindVM, "big", "migrate", api.MigrateRequest{Host: "host-2"})
	if !errors.Is(err, api.ErrUnprocessable) || !strings.Contains(err.Error(), "room") {
		t.Fatalf("migrating to a host without room: %v", err)
	}
	d.run(d.c.Power(ctx, "hog", api.PowerRequest{Action: api.ActionStop, Force: true}))
	d.run(d.c.Action(ctx, api.KindHost, "host-2", "maintenance", api.MaintenanceRequest{Action: "enter"}))
	_, err = d.c.Action(ctx, api.KindVM, "big", "migrate", api.MigrateRequest{Host: "host-2"})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "maintenance") {
		t.Fatalf("migrating to a host in maintenance: %v", err)
	}
	// A local datastore of one host is out of reach of the other.
	local := filepath.Join(d.dir, "local1")
	os.MkdirAll(local, 0o755)
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "local1", Path: local, Host: "host-1"}))
	eventually(t, 10*time.Second, "host-1 reaching local1", func() bool {
		ds, err := client.Get[*api.Datastore](ctx, d.c, api.KindDatastore, "local1")
		return err == nil && len(ds.Status.Hosts) == 1
	})
	d.run(d.c.Action(ctx, api.KindHost, "host-2", "maintenance", api.MaintenanceRequest{Action: "exit"}))
	d.run(d.c.Power(ctx, "big", api.PowerRequest{Action: api.ActionStop, Force: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "loc", CPUs: 1, Memory: api.MustSize("64MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB"), Datastore: "local1"}}, PowerOn: true}))
	_, err = d.c.Action(ctx, api.KindVM, "loc", "migrate", api.MigrateRequest{Host: "host-2"})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "does not reach datastore local1") {
		t.Fatalf("migrating away from a local datastore without a new one: %v", err)
	}
	// With a datastore the target reaches, the disks go along.
	res := migrate(t, d, "loc", api.MigrateRequest{Host: "host-2", Datastore: "datastore1"})
	vm := d.vm("loc")
	if vm.Spec.Host.Name != "host-2" || vm.Spec.Disks[0].Datastore.Name != "datastore1" || !res.Live {
		t.Fatalf("migration with storage: %+v", vm.Spec)
	}
}

func TestCancelMigration(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "slow", CPUs: 1, Memory: api.MustSize("4GiB"), Host: "host-1", PowerOn: true}))
	// At 1 MiB/s, 4 GiB takes an hour: plenty of time to cancel.
	task, err := d.c.Action(ctx, api.KindVM, "slow", "migrate", api.MigrateRequest{Host: "host-2", MaxBandwidth: api.MustSize("1MiB")})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the migration running", func() bool {
		tk, _ := d.c.GetTask(ctx, task.Metadata.ID)
		return tk.State == api.TaskRunning && tk.Progress > 0
	})
	if err := d.c.Do(ctx, client.Request{Method: "POST", Path: "/tasks/" + task.Metadata.ID + "/cancel"}, nil); err != nil {
		t.Fatal(err)
	}
	final, err := d.c.WaitTask(ctx, task.Metadata.ID, nil)
	if final == nil || final.State != api.TaskCanceled {
		t.Fatalf("after cancel: %+v %v", final, err)
	}
	if vm := d.vm("slow"); vm.Spec.Host.Name != "host-1" || vm.Status.PowerState != api.PowerOn {
		t.Fatalf("after a cancelled migration: %s on %s", vm.Status.PowerState, vm.Spec.Host.Name)
	}
	if err := d.c.Do(ctx, client.Request{Method: "POST", Path: "/tasks/" + task.Metadata.ID + "/cancel"}, nil); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("cancelling a finished task: %v", err)
	}
	// A retry works.
	migrate(t, d, "slow", api.MigrateRequest{Host: "host-2"})
	if vm := d.vm("slow"); vm.Spec.Host.Name != "host-2" {
		t.Fatalf("retry: on %s", vm.Spec.Host.Name)
	}
}

func TestMaintenanceEvacuates(t *testing.T) {
	d := newDC(t, 3)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: fmt.Sprintf("e%d", i), CPUs: 1, Memory: api.MustSize("1GiB"), Host: "host-1", PowerOn: i < 4}))
	}
	task := d.run(d.c.Action(ctx, api.KindHost, "host-1", "maintenance", api.MaintenanceRequest{Action: "enter"}))
	h := host(t, d, "host-1")
	if !h.Spec.Maintenance || h.Status.VMs != 0 {
		t.Fatalf("host-1 after entering maintenance: maintenance %v, %d VMs", h.Spec.Maintenance, h.Status.VMs)
	}
	spread := map[string]int{}
	for i := 0; i < 6; i++ {
		vm := d.vm(fmt.Sprintf("e%d", i))
		spread[vm.Spec.Host.Name]++
		want := api.PowerOff
		if i < 4 {
			want = api.PowerOn
		}
		if vm.Status.PowerState != want {
			t.Fatalf("%s is %s after the evacuation", vm.Metadata.Name, vm.Status.PowerState)
		}
	}
	if spread["host-2"] != 3 || spread["host-3"] != 3 {
		t.Fatalf("evacuated VMs should spread, got %v", spread)
	}
	children, _ := client.List[*api.Task](ctx, d.c, api.KindTask, nil)
	n := 0
	for _, c := range children {
		if c.Parent == task.Metadata.ID && c.Op == "vm.migrate" && c.State == api.TaskSucceeded {
			n++
		}
	}
	if n != 6 {
		t.Fatalf("want 6 migration tasks under the maintenance task, got %d", n)
	}
	d.run(d.c.Action(ctx, api.KindHost, "host-1", "maintenance", api.MaintenanceRequest{Action: "exit"}))

	// When the VMs cannot go anywhere, nothing changes and it says why.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "huge", CPUs: 1, Memory: api.MustSize("15GiB"), Host: "host-1", PowerOn: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "fill2", CPUs: 1, Memory: api.MustSize("8GiB"), Host: "host-2", PowerOn: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "fill3", CPUs: 1, Memory: api.MustSize("8GiB"), Host: "host-3", PowerOn: true}))
	_, err := d.c.Action(ctx, api.KindHost, "host-1", "maintenance", api.MaintenanceRequest{Action: "enter"})
	if !errors.Is(err, api.ErrUnprocessable) || !strings.Contains(err.Error(), "huge") {
		t.Fatalf("evacuating a VM that fits nowhere: %v", err)
	}
	if h := host(t, d, "host-1"); h.Spec.Maintenance {
		t.Fatal("a refused maintenance left the host in maintenance")
	}
}
