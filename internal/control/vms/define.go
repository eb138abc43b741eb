package vms

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// runCreate is the vm.create task: it defines the VM on the host chosen
// (undoing the create if that fails), then powers it on if asked.
func (s *Service) runCreate(ctx context.Context, t *tasks.Run) (any, error) {
	var p createParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if vm == nil {
		return nil, err
	}
	if vm.Status.Phase == api.PhaseCreating {
		if err == nil {
			err = s.Define(ctx, t, vm, h)
		}
		if err != nil && t.Leader.Err() != nil {
			// Cut short by the end of leadership (a server stopping):
			// the next leader resumes the create, so nothing is undone.
			return nil, fmt.Errorf("create vm %s on host %s: %w", vm.Metadata.Name, vm.Spec.Host.Name, err)
		}
		if err != nil {
			s.undoCreate(ctx, vm, h)
			return nil, fmt.Errorf("create vm %s on host %s: %w", vm.Metadata.Name, vm.Spec.Host.Name, err)
		}
	}
	if p.PowerOn {
		t.Progress(ctx, 50, "powering on")
		if _, err := s.PowerOn(ctx, t, vm.Metadata.ID); err != nil {
			return nil, fmt.Errorf("vm %s was created but did not power on: %w", vm.Metadata.Name, err)
		}
	}
	return api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name}, nil
}

// undoCreate leaves nothing of a VM whose create failed: not on its host,
// not in the store.
func (s *Service) undoCreate(ctx context.Context, vm *api.VM, h *api.Host) {
	if h != nil && h.Status.Address != "" {
		_ = s.hosts.Undefine(ctx, hosts.TargetOf(h), vm.Metadata.ID, true)
	}
	if derr := s.inv.RemoveVM(ctx, vm); derr != nil {
		s.log.Error("cannot remove the VM of a failed create", "vm", vm.Metadata.Name, "err", derr)
	}
}

// Define gives host h the VM's definition and marks the VM ready (with the
// task's outcome).
func (s *Service) Define(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host) error {
	cfg, err := s.inv.VMConfig(vm)
	if err != nil {
		return err
	}
	t.Progress(ctx, 10, "defining the VM on host "+h.Metadata.Name)
	st, err := s.hosts.Define(ctx, hosts.TargetOf(h), cfg)
	if err != nil {
		return err
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Status.Phase = api.PhaseReady
		// A disk made from an image takes the image's size.
		for _, m := range st.Disks {
			for i := range v.Spec.Disks {
				if d := &v.Spec.Disks[i]; d.Name == m.Name && m.VirtualBytes > d.SizeBytes {
					d.SizeBytes = m.VirtualBytes
				}
			}
		}
		return nil
	})
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return nil
}

// deleteParams are kept in the vm.delete task.
type deleteParams struct {
	Force bool `json:"force,omitempty"`
}

// PlanDelete checks that vm can be deleted and marks it so (vm is a copy
// the caller writes with the task DeleteTask makes).
func (s *Service) PlanDelete(vm *api.VM, force bool) error {
	if err := inventory.CheckReady(vm); err != nil {
		return err
	}
	if _, err := s.inv.VMHost(vm); err != nil {
		return fmt.Errorf("cannot delete vm %s: %w", vm.Metadata.Name, err)
	}
	if state.HoldsResources(vm) && !force {
		return api.Errorf(api.ErrConflict, "vm %s is %s: stop it first, or delete with force", vm.Metadata.Name, vm.Status.PowerState)
	}
	if deps := s.storage.Dependents(vm); len(deps) > 0 {
		return api.Errorf(api.ErrConflict, "cannot delete vm %s: linked clones depend on its disks: %s", vm.Metadata.Name, strings.Join(inventory.FirstN(deps, 10), ", "))
	}
	vm.Status.Phase = api.PhaseDeleting
	return nil
}

// DeleteTask is the vm.delete task of a VM PlanDelete accepted.
func (s *Service) DeleteTask(ctx context.Context, vm api.Object, force bool) *api.Task {
	return tasks.New(ctx, api.OpVMDelete, vm, deleteParams{Force: force})
}

// runDelete is the vm.delete task: the host lets go of the VM and its
// files, then the VM leaves the store; on failure the VM stays, usable.
func (s *Service) runDelete(ctx context.Context, t *tasks.Run) (any, error) {
	var p deleteParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if errors.Is(err, api.ErrNotFound) && t.Resumed {
		return nil, nil // already gone
	}
	if err == nil {
		t.Progress(ctx, 20, "removing the VM from host "+h.Metadata.Name)
		err = s.hosts.Undefine(ctx, hosts.TargetOf(h), vm.Metadata.ID, p.Force)
		if errors.Is(err, api.ErrNotFound) {
			err = nil // the host never had it, or already removed it
		}
		if err == nil {
			// The files its snapshots kept go too.
			if rerr := s.hosts.RemoveFiles(ctx, hosts.TargetOf(h), s.storage.SnapshotFiles(vm)); rerr != nil {
				s.log.Warn("cannot remove the snapshot files of a deleted VM", "vm", vm.Metadata.Name, "err", rerr)
			}
		}
	}
	if err == nil {
		if err = s.inv.RemoveVM(ctx, vm); err == nil {
			return nil, nil
		}
	}
	// Undo: the VM stays, usable again.
	if vm != nil {
		_ = state.Update(ctx, s.st, nil, vm.Metadata.ID, func(v *api.VM) error {
			v.Status.Phase = api.PhaseReady
			return nil
		})
		return nil, fmt.Errorf("delete vm %s: %w", vm.Metadata.Name, err)
	}
	return nil, err
}
