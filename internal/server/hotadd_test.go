package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

// A running VM grows with CPU and memory hot-add as vSphere's: within the
// room it was created with, only up, with room on its host; every refusal
// is a clear 4xx that changes nothing and queues no task.
func TestVMHotAddAPI(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	gib := api.MustSize("1GiB")
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: gib, MaxCPUs: 20, MaxMemory: 2 * gib, PowerOn: true}))
	vm := d.vm("web1")
	if vm.Spec.MaxCPUs != 20 || vm.Spec.MaxMemoryBytes != 2*gib {
		t.Fatalf("spec %+v", vm.Spec)
	}
	update := func(req api.VMUpdateRequest) (*api.Task, error) {
		cur := d.vm("web1")
		return d.c.Update(ctx, api.KindVM, "web1", req, cur.Metadata.Generation)
	}

	task := d.run(update(api.VMUpdateRequest{CPUs: ptr(3), Memory: ptr(gib + 512<<20)}))
	if task.Op != "vm.hot-add" {
		t.Fatalf("a running VM's resize is task %s, want vm.hot-add", task.Op)
	}
	var res api.VMResizeResult
	if err := json.Unmarshal(task.Result, &res); err != nil || res.CPUs != 3 || res.MemoryBytes != gib+512<<20 || !strings.Contains(res.Message, "now has 3 vCPUs") {
		t.Fatalf("hot-add result %s (%v)", task.Result, err)
	}
	if vm := d.vm("web1"); vm.Spec.CPUs != 3 || vm.Spec.MemoryBytes != gib+512<<20 || vm.Status.PowerState != api.PowerOn {
		t.Fatalf("after hot-add: %d vCPUs, %s, %s", vm.Spec.CPUs, vm.Spec.MemoryBytes, vm.Status.PowerState)
	}

	before, _ := d.c.ListTasks(ctx, clientTaskQuery())
	for what, c := range map[string]struct {
		req  api.VMUpdateRequest
		want error
		says string
	}{
		"remove a vCPU":          {api.VMUpdateRequest{CPUs: ptr(2)}, api.ErrConflict, "not removed"},
		"remove memory":          {api.VMUpdateRequest{Memory: ptr(gib)}, api.ErrConflict, "not removed"},
		"beyond max-cpus":        {api.VMUpdateRequest{CPUs: ptr(21)}, api.ErrInvalid, "maxCpus (20) is below"},
		"beyond max-memory":      {api.VMUpdateRequest{Memory: ptr(3 * gib)}, api.ErrInvalid, "maxMemory (2 GiB) is below"},
		"not a memory step":      {api.VMUpdateRequest{Memory: ptr(gib + 513<<20)}, api.ErrInvalid, "steps of 128 MiB"},
		"max-cpus while running": {api.VMUpdateRequest{MaxCPUs: ptr(8)}, api.ErrConflict, "while it is off"},
	} {
		_, err := update(c.req)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: got %v, want %v saying %q", what, err, c.want, c.says)
		}
	}
	after, _ := d.c.ListTasks(ctx, clientTaskQuery())
	if len(after) != len(before) {
		t.Fatalf("refused requests left tasks: %d before, %d after", len(before), len(after))
	}
	if vm := d.vm("web1"); vm.Spec.CPUs != 3 || vm.Spec.MemoryBytes != gib+512<<20 {
		t.Fatalf("refused requests changed the VM: %d vCPUs, %s", vm.Spec.CPUs, vm.Spec.MemoryBytes)
	}
	// Up to the ceiling: 8 host CPUs at 4x overcommit are 32 vCPUs.
	d.run(update(api.VMUpdateRequest{CPUs: ptr(20), Memory: ptr(2 * gib)}))

	// The host has no room: 32 vCPUs at most.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "big", CPUs: 10, Memory: gib, MaxCPUs: 64, PowerOn: true}))
	cur := d.vm("big")
	if _, err := d.c.Update(ctx, api.KindVM, "big", api.VMUpdateRequest{CPUs: ptr(20)}, cur.Metadata.Generation); !errors.Is(err, api.ErrUnprocessable) || !strings.Contains(err.Error(), "has room for 2 more vCPU") {
		t.Fatalf("hot-add beyond the host's room: %v", err)
	}

	// Without max-cpus a running VM keeps its vCPUs; off, it changes freely.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "fixed", CPUs: 1, Memory: gib, PowerOn: true}))
	cur = d.vm("fixed")
	if _, err := d.c.Update(ctx, api.KindVM, "fixed", api.VMUpdateRequest{CPUs: ptr(2)}, cur.Metadata.Generation); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "CPU hot-add is off") {
		t.Fatalf("hot-add without max-cpus: %v", err)
	}
	d.run(d.c.Power(ctx, "fixed", api.PowerRequest{Action: api.ActionStop, Force: true}))
	cur = d.vm("fixed")
	d.run(d.c.Update(ctx, api.KindVM, "fixed", api.VMUpdateRequest{CPUs: ptr(2), MaxCPUs: ptr(4), MaxMemory: ptr(4 * gib)}, cur.Metadata.Generation))
	if vm := d.vm("fixed"); vm.Spec.CPUs != 2 || vm.Spec.MaxCPUs != 4 || vm.Spec.MaxMemoryBytes != 4*gib {
		t.Fatalf("update while off: %+v", vm.Spec)
	}

	// A ceiling below the size is bad input.
	if _, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: "bad", CPUs: 4, Memory: gib, MaxCPUs: 2}); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("create with maxCpus below cpus: %v", err)
	}

	// VNC on a running VM applies at the next power-on, and says so.
	cur = d.vm("web1")
	task = d.run(d.c.Update(ctx, api.KindVM, "web1", api.VMUpdateRequest{VNC: ptr(true)}, cur.Metadata.Generation))
	if !d.vm("web1").Spec.VNC || !strings.Contains(task.Message, "turns on at its next power-on") {
		t.Fatalf("VNC update of a running VM: spec %v, task message %q", d.vm("web1").Spec.VNC, task.Message)
	}
}
