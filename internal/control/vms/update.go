package vms

import (
	"context"
	"fmt"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// Update is what a planned change of a VM leads to: a vm.hot-add task
// when a running VM grows, else a change the request completes itself,
// with a note when part of it waits for the VM's next power-on.
type Update struct {
	hot  *hotAddParams
	note string
}

// Task is the task that records the change of upd (the VM as changed).
func (u *Update) Task(ctx context.Context, upd api.Object) *api.Task {
	if u.hot != nil {
		return tasks.New(ctx, api.OpVMHotAdd, upd, u.hot)
	}
	t := tasks.Done(tasks.New(ctx, tasks.OpName(api.KindVM, "update"), upd, nil), upd)
	t.Message = u.note
	return t
}

// PlanUpdate applies req to vm, a copy the caller writes together with
// the returned Update's task: rename, relabel, describe, HA priority, VNC;
// CPUs and memory while the VM is off, or growing while it runs (a
// hot-add). The host gets a definition changed while off at the next
// start.
func (s *Service) PlanUpdate(vm *api.VM, req *api.VMUpdateRequest) (*Update, error) {
	err := inventory.FirstErr(inventory.CheckReady(vm), inventory.Rename("vm", &vm.Metadata, req.Name), inventory.Relabel(&vm.Metadata, req.Labels), inventory.Redescribe(&vm.Spec.Description, req.Description))
	if err == nil && req.HAPriority != nil {
		// Takes effect at once: the host's HA settings change, and a
		// running VM takes or lets go of its lease.
		err = s.ha.ValidateHAPriority(*req.HAPriority)
		vm.Spec.HAPriority = *req.HAPriority
	}
	if err != nil {
		return nil, err
	}
	u := &Update{}
	running := vm.Status.PowerState != api.PowerOff
	if req.VNC != nil {
		vm.Spec.VNC = *req.VNC
		if has := vm.Status.VNC != ""; running && has != *req.VNC {
			state := map[bool]string{true: "on", false: "off"}[*req.VNC]
			u.note = fmt.Sprintf("vm %s is %s: its VNC display turns %s at its next power-on", vm.Metadata.Name, vm.Status.PowerState, state)
		}
	}
	if req.MaxCPUs != nil || req.MaxMemory != nil {
		if running {
			return nil, api.Errorf(api.ErrConflict, "vm %s is %s: set max-cpus and max-memory while it is off (they shape the hardware it starts with)", vm.Metadata.Name, vm.Status.PowerState)
		}
		if req.MaxCPUs != nil {
			vm.Spec.MaxCPUs = *req.MaxCPUs
		}
		if req.MaxMemory != nil {
			vm.Spec.MaxMemoryBytes = *req.MaxMemory
		}
	}
	if err := s.resize(vm, req, u); err != nil {
		return nil, err
	}
	return u, nil
}

// resize applies the CPUs and memory req asks for: at once while the VM
// is off, by a hot-add while it runs.
func (s *Service) resize(vm *api.VM, req *api.VMUpdateRequest, u *Update) error {
	cpus, mem := vm.Spec.CPUs, vm.Spec.MemoryBytes
	if req.CPUs != nil {
		cpus = *req.CPUs
	}
	if req.Memory != nil {
		mem = *req.Memory
	}
	if err := inventory.FirstErr(inventory.ValidateVMShape(cpus, mem), validateHotAddRoom(cpus, mem, vm.Spec.MaxCPUs, vm.Spec.MaxMemoryBytes)); err != nil {
		return err
	}
	running := vm.Status.PowerState != api.PowerOff
	if !running || (cpus == vm.Spec.CPUs && mem == vm.Spec.MemoryBytes) {
		vm.Spec.CPUs, vm.Spec.MemoryBytes = cpus, mem
		return nil
	}
	if err := s.checkHotAdd(vm, cpus, mem); err != nil {
		return err
	}
	// The spec takes the new size once the host has added it.
	u.hot = &hotAddParams{CPUs: cpus, Memory: mem}
	return nil
}
