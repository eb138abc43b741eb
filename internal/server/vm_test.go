package server_test

import (
	"context"
	"errors"
	"net/url"
	"testing"

	"github.com/vdc-project/vdc/api"
)

func TestVMLifecycle(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	task := d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 2, Memory: api.MustSize("1GiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("10GiB")}}}))
	if task.State != api.TaskSucceeded || task.Op != "vm.create" {
		t.Fatalf("task %+v", task)
	}
	vm := d.vm("web1")
	if vm.Status.PowerState != api.PowerOff || vm.Status.Phase != api.PhaseReady || vm.Spec.Host.Name == "" {
		t.Fatalf("new vm: %+v", vm.Status)
	}
	if len(vm.Spec.NICs) != 1 || vm.Spec.NICs[0].PortGroup.Name != "vm-network" || vm.Spec.Disks[0].Datastore.Name != "datastore1" {
		t.Fatalf("defaults: nics %+v disks %+v", vm.Spec.NICs, vm.Spec.Disks)
	}
	for _, step := range []struct{ action, want string }{
		{api.ActionStart, api.PowerOn}, {api.ActionSuspend, api.PowerSuspended}, {api.ActionResume, api.PowerOn},
		{api.ActionReset, api.PowerOn}, {api.ActionStop, api.PowerOff},
	} {
		d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: step.action}))
		if got := d.vm("web1").Status.PowerState; got != step.want {
			t.Fatalf("after %s: power %s, want %s", step.action, got, step.want)
		}
	}
	// Wrong state is refused at once, with nothing queued.
	before, _ := d.c.ListTasks(ctx, clientTaskQuery())
	_, err := d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStop})
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("stopping an off VM: want 409, got %v", err)
	}
	after, _ := d.c.ListTasks(ctx, clientTaskQuery())
	if len(after) != len(before) {
		t.Fatalf("a refused request left a task")
	}
	d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStart}))
	if _, err := d.c.Delete(ctx, api.KindVM, "web1", nil); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("deleting a running VM without force: want 409, got %v", err)
	}
	d.run(d.c.Delete(ctx, api.KindVM, "web1", url.Values{"force": {"true"}}))
	if _, err := d.c.GetVM(ctx, "web1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("deleted vm still there: %v", err)
	}
}
