package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

func (s *Server) registerTaskHandlers(r *tasks.Runner) {
	r.Register(api.OpVMCreate, tasks.Handler{Run: s.runVMCreate, Resumable: true})
	s.registerTransferTasks(r)
	r.Register(api.OpVMDelete, tasks.Handler{Run: s.runVMDelete, Resumable: true})
	r.Register(api.OpVMMigrate, tasks.Handler{Run: s.runVMMigrate, Resumable: true, Cancelable: true})
	s.maintenance.Register(r)
	s.ha.Register(r)
	s.registerStorageTasks(r)
	r.Register(api.OpVMHotAdd, tasks.Handler{Run: s.runVMHotAdd, Resumable: true})
	for action := range powerActions {
		h := tasks.Handler{Run: s.runVMPower, Resumable: true}
		if action == api.ActionReset {
			h = tasks.Handler{Run: s.runVMPower, Interrupted: "the VM may or may not have been reset"}
		}
		r.Register(api.OpVMPower(action), h)
	}
}

func (s *Server) runVMCreate(ctx context.Context, t *tasks.Run) (any, error) {
	var p vmCreateParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if vm == nil {
		return nil, err
	}
	if vm.Status.Phase == api.PhaseCreating {
		if err == nil {
			err = s.defineVM(ctx, t, vm, h)
		}
		if err != nil && t.Leader.Err() != nil {
			// Cut short by the end of leadership (a server stopping):
			// the next leader resumes the create, so nothing is undone.
			return nil, fmt.Errorf("create vm %s on host %s: %w", vm.Metadata.Name, vm.Spec.Host.Name, err)
		}
		if err != nil {
			// Undo: nothing of the VM may stay behind.
			if h != nil && h.Status.Address != "" {
				_ = s.agents.Undefine(ctx, hosts.TargetOf(h), vm.Metadata.ID, true)
			}
			if derr := s.inv.RemoveVM(ctx, vm); derr != nil {
				s.log.Error("cannot remove the VM of a failed create", "vm", vm.Metadata.Name, "err", derr)
			}
			return nil, fmt.Errorf("create vm %s on host %s: %w", vm.Metadata.Name, vm.Spec.Host.Name, err)
		}
	}
	if p.PowerOn {
		t.Progress(ctx, 50, "powering on")
		if _, err := s.powerOn(ctx, t, vm.Metadata.ID); err != nil {
			return nil, fmt.Errorf("vm %s was created but did not power on: %w", vm.Metadata.Name, err)
		}
	}
	return api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name}, nil
}

// defineVM gives the host the VM's definition and marks the VM ready.
func (s *Server) defineVM(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host) error {
	cfg, err := s.inv.VMConfig(vm)
	if err != nil {
		return err
	}
	t.Progress(ctx, 10, "defining the VM on host "+h.Metadata.Name)
	st, err := s.agents.Define(ctx, hosts.TargetOf(h), cfg)
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

func (s *Server) runVMDelete(ctx context.Context, t *tasks.Run) (any, error) {
	var p vmDeleteParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if errors.Is(err, api.ErrNotFound) && t.Resumed {
		return nil, nil // already gone
	}
	if err == nil {
		t.Progress(ctx, 20, "removing the VM from host "+h.Metadata.Name)
		err = s.agents.Undefine(ctx, hosts.TargetOf(h), vm.Metadata.ID, p.Force)
		if errors.Is(err, api.ErrNotFound) {
			err = nil // the host never had it, or already removed it
		}
		if err == nil {
			// The files its snapshots kept go too.
			if rerr := s.agents.RemoveFiles(ctx, hosts.TargetOf(h), s.snapshotFiles(vm)); rerr != nil {
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
		_ = state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
			o.(*api.VM).Status.Phase = api.PhaseReady
			return nil
		})
		return nil, fmt.Errorf("delete vm %s: %w", vm.Metadata.Name, err)
	}
	return nil, err
}

func (s *Server) runVMPower(ctx context.Context, t *tasks.Run) (any, error) {
	var req api.PowerRequest
	if err := t.Params(&req); err != nil {
		return nil, err
	}
	if req.Action == api.ActionStart {
		return s.powerOn(ctx, t, t.Task.Target.ID)
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := checkPower(vm, req.Action); err != nil {
		if t.Resumed && vm.Status.PowerState == powerActions[req.Action].to {
			return vm.Status.PowerState, nil // done before the restart
		}
		return nil, err
	}
	var st api.AgentVMState
	if req.Action == api.ActionStop && !req.Force && vm.Status.PowerState == api.PowerOn {
		st, err = s.gracefulStop(ctx, t, vm, h, req)
	} else {
		t.Progress(ctx, 10, req.Action+" in progress")
		st, err = s.agents.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	}
	if err != nil {
		return nil, fmt.Errorf("%s vm %s on host %s: %w", req.Action, vm.Metadata.Name, h.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return st.PowerState, nil
}

// gracefulStop asks the guest to shut down and powers the VM off once
// the timeout is up; the host does both in one call. Meanwhile the task
// says what it waits for and how long is left, then that it powers off:
// a guest that ignores the request must not look like a task that hangs.
func (s *Server) gracefulStop(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, req api.PowerRequest) (api.AgentVMState, error) {
	timeout := api.DefaultStopTimeout
	if req.TimeoutSeconds > 0 {
		timeout = time.Duration(req.TimeoutSeconds) * time.Second
	}
	how := "ACPI"
	if g := vm.Status.Guest; g != nil && g.State == api.GuestRunning {
		how = "guest agent" // the host asks through it while it answers
	}
	// The host's clock for the timeout starts when the call arrives,
	// a little after this one: it powers off just after we say so.
	start := time.Now()
	deadline := start.Add(timeout)
	var st api.AgentVMState
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		st, err = s.agents.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	}()
	// One update a second, at most about a hundred for a long timeout.
	step := max(time.Second, (timeout / 100).Truncate(time.Second))
	tick := time.NewTicker(step)
	defer tick.Stop()
	for {
		left := time.Until(deadline)
		if left <= 0 {
			t.Announce(ctx, 90, fmt.Sprintf("the guest did not shut down within %s; powering off", timeout))
			<-done
			return st, err
		}
		pct := 10 + int(80*time.Since(start)/timeout)
		t.Announce(ctx, pct, fmt.Sprintf("waiting for the guest to shut down (%s), %s left", how, shortLeft(left, step)))
		select {
		case <-done:
			return st, err
		case <-tick.C:
		}
	}
}

// shortLeft rounds a remaining time up to whole steps: "42s", "3m10s".
func shortLeft(left, step time.Duration) string {
	return ((left + step - 1) / step * step).String()
}

// powerOn starts (or resumes) a VM: it pushes the current definition,
// holds room on the host, and records the new state.
func (s *Server) powerOn(ctx context.Context, t *tasks.Run, vmID string) (any, error) {
	o, err := s.store.Get(ctx, api.KindVM, vmID)
	if err != nil {
		return nil, err
	}
	vm := o.(*api.VM)
	h, err := s.inv.VMHost(vm)
	if err != nil {
		return nil, err
	}
	if err := checkPower(vm, api.ActionStart); err != nil {
		if t.Resumed && vm.Status.PowerState == api.PowerOn {
			return api.PowerOn, nil
		}
		return nil, err
	}
	action := api.ActionStart
	if vm.Status.PowerState == api.PowerSuspended {
		action = api.ActionResume
	} else {
		co, ok := s.cache.Get(api.KindCluster, vm.Spec.Cluster.ID)
		if !ok {
			return nil, api.Errorf(api.ErrConflict, "vm %s is in no cluster", vm.Metadata.Name)
		}
		release, err := s.places.Admit(vm, co.(*api.Cluster), h, true)
		if err != nil {
			return nil, err
		}
		// Hold the room until the new power state is recorded.
		t.After(release)
		if err := s.checkHAAdmission(vm, co.(*api.Cluster), h); err != nil {
			return nil, err
		}
		cfg, err := s.inv.VMConfig(vm)
		if err != nil {
			return nil, err
		}
		if _, err := s.agents.Define(ctx, hosts.TargetOf(h), cfg); err != nil {
			return nil, fmt.Errorf("update the definition of vm %s on host %s: %w", vm.Metadata.Name, h.Metadata.Name, err)
		}
	}
	t.Progress(ctx, 60, "powering on")
	st, err := s.agents.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, api.PowerRequest{Action: action})
	if err != nil {
		return nil, fmt.Errorf("power on vm %s on host %s: %w", vm.Metadata.Name, h.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return st.PowerState, nil
}
