package vms

import (
	"context"
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// api.OpVMHotAdd is the task that adds vCPUs and memory to a running VM.

// hotAddParams are the size the VM is to have.
type hotAddParams struct {
	CPUs   int      `json:"cpus"`
	Memory api.Size `json:"memory"`
}

// checkHotAdd says whether a running VM can grow to cpus and mem now:
// only up, within the room it started with, on a host with room.
func (s *Service) checkHotAdd(vm *api.VM, cpus int, mem api.Size) error {
	name := vm.Metadata.Name
	if vm.Status.PowerState != api.PowerOn {
		return api.Errorf(api.ErrConflict, "vm %s is %s: resume it to hot-add vCPUs or memory, or stop it to change them", name, vm.Status.PowerState)
	}
	switch {
	case cpus < vm.Spec.CPUs:
		return api.Errorf(api.ErrConflict, "vm %s is on with %d vCPUs: vCPUs can be added while it runs, not removed (hot-remove is not supported: the guest may be using them); stop it to go down to %d", name, vm.Spec.CPUs, cpus)
	case mem < vm.Spec.MemoryBytes:
		return api.Errorf(api.ErrConflict, "vm %s is on with %s of memory: memory can be added while it runs, not removed (hot-remove is not supported: the guest may be using it); stop it to go down to %s", name, vm.Spec.MemoryBytes, mem)
	case cpus > vm.Spec.CPUs && vm.Spec.MaxCPUs == 0:
		return api.Errorf(api.ErrConflict, "vm %s is on and CPU hot-add is off for it: stop it to change its vCPUs, or turn hot-add on while it is off (vdc vm update %s --max-cpus N)", name, name)
	case cpus > vm.Spec.MaxCPUs && cpus > vm.Spec.CPUs:
		return api.Errorf(api.ErrConflict, "vm %s can grow to at most %d vCPUs while it runs (max-cpus); stop it to give it %d", name, vm.Spec.MaxCPUs, cpus)
	case mem > vm.Spec.MemoryBytes && vm.Spec.MaxMemoryBytes == 0:
		return api.Errorf(api.ErrConflict, "vm %s is on and memory hot-add is off for it: stop it to change its memory, or turn hot-add on while it is off (vdc vm update %s --max-memory SIZE)", name, name)
	case mem > vm.Spec.MaxMemoryBytes && mem > vm.Spec.MemoryBytes:
		return api.Errorf(api.ErrConflict, "vm %s can grow to at most %s of memory while it runs (max-memory); stop it to give it %s", name, vm.Spec.MaxMemoryBytes, mem)
	case (mem-vm.Spec.MemoryBytes)%api.MemoryHotplugStep != 0:
		return api.Errorf(api.ErrInvalid, "memory is hot-added in steps of %s: %s to add (%s to %s) is not a multiple", api.MemoryHotplugStep, mem-vm.Spec.MemoryBytes, vm.Spec.MemoryBytes, mem)
	}
	if err := inventory.FirstErr(s.inv.NotMoving(vm), s.inv.NotHotAdding(vm)); err != nil {
		return err
	}
	h, err := s.inv.VMHost(vm)
	if err != nil {
		return err
	}
	cl, err := s.cluster(vm)
	if err != nil {
		return err
	}
	_, err = s.places.AdmitGrow(vm, cl, h, cpus-vm.Spec.CPUs, int64(mem-vm.Spec.MemoryBytes), false)
	return err
}

// runHotAdd is the vm.hot-add task: the host adds the vCPUs and memory,
// holding the room they take, and asks the guest to bring them online.
func (s *Service) runHotAdd(ctx context.Context, t *tasks.Run) (any, error) {
	var p hotAddParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	name := vm.Metadata.Name
	if vm.Spec.CPUs == p.CPUs && vm.Spec.MemoryBytes == p.Memory && t.Resumed {
		return api.VMResizeResult{CPUs: p.CPUs, MemoryBytes: p.Memory, Message: "added before the server restarted"}, nil
	}
	if vm.Status.PowerState != api.PowerOn {
		return nil, api.Errorf(api.ErrConflict, "hot-add to vm %s: it is %s now; change its vCPUs and memory with vdc vm update while it is off", name, vm.Status.PowerState)
	}
	cl, err := s.cluster(vm)
	if err != nil {
		return nil, err
	}
	release, err := s.places.AdmitGrow(vm, cl, h, max(p.CPUs-vm.Spec.CPUs, 0), int64(max(p.Memory-vm.Spec.MemoryBytes, 0)), true)
	if err != nil {
		return nil, err
	}
	t.After(release)
	t.Progress(ctx, 20, fmt.Sprintf("hot-adding %s to vm %s on host %s, then asking the guest to bring them online", hotAddWhat(vm, p), name, h.Metadata.Name))
	res, err := s.hosts.HotAdd(ctx, hosts.TargetOf(h), vm.Metadata.ID, agent.HotAddRequest{CPUs: p.CPUs, MemoryBytes: int64(p.Memory)})
	if err != nil {
		return nil, fmt.Errorf("hot-add to vm %s on host %s: %w", name, h.Metadata.Name, err)
	}
	cpus, mem := res.Hardware.TotalCPUs(), res.Hardware.TotalMemory()
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Spec.CPUs, v.Spec.MemoryBytes = cpus, mem
		return nil
	})
	return api.VMResizeResult{CPUs: cpus, MemoryBytes: mem,
		Message: fmt.Sprintf("vm %s now has %d vCPUs and %s; %s", name, cpus, mem, res.Guest)}, nil
}

// hotAddWhat says what a hot-add adds: "2 vCPUs and 512 MiB of memory".
func hotAddWhat(vm *api.VM, p hotAddParams) string {
	var what []string
	switch n := p.CPUs - vm.Spec.CPUs; {
	case n == 1:
		what = append(what, "1 vCPU")
	case n > 1:
		what = append(what, fmt.Sprintf("%d vCPUs", n))
	}
	if m := p.Memory - vm.Spec.MemoryBytes; m > 0 {
		what = append(what, m.String()+" of memory")
	}
	return strings.Join(what, " and ")
}
