package ha

import (
	"context"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/scheduler"
)

// restartParams are a vm.ha-restart task's parameters.
type restartParams struct {
	From    string `json:"from"` // the failed host's ID
	Host    string `json:"host"` // where to restart
	Attempt int    `json:"attempt"`
}

// group plans and queues the restarts of one priority's VMs. VMs that fit
// nowhere get a failed task that says why.
func (f *failover) group(ctx context.Context, h *api.Host, cl *api.Cluster, group []*api.VM) []*api.Task {
	s := f.s
	byID := map[string]*api.VM{}
	var want []scheduler.HAVM
	for _, vm := range group {
		byID[vm.Metadata.ID] = vm
		want = append(want, s.haVM(vm))
	}
	// Only hosts that run the same hypervisor: a guest restarted elsewhere
	// needs the same machine and CPU model.
	var fit []scheduler.Host
	for _, sh := range s.d.Places.Hosts(cl.Metadata.ID) {
		if o, ok := state.Get[*api.Host](s.d.State, sh.ID); ok && o.Status.Driver == h.Status.Driver {
			fit = append(fit, sh)
		}
	}
	placed, unplaced := scheduler.PlanRestarts(fit, want, scheduler.Ratios{CPU: cl.Spec.CPUOvercommit, Memory: cl.Spec.MemoryOvercommit})
	var started []*api.Task
	for _, p := range placed {
		vm := byID[p.VM.ID]
		child := f.restart(ctx, vm, restartParams{From: h.Metadata.ID, Host: p.Host.ID})
		child.Message = fmt.Sprintf("host %s failed; restarting on host %s", h.Metadata.Name, p.Host.Name)
		if c, err := s.d.Tasks.Submit(ctx, s.d.State.Store.Txn(), child); err == nil {
			started = append(started, c)
		} else {
			f.lastErr[vm.Metadata.ID] = err.Error()
		}
	}
	for _, u := range unplaced {
		vm := byID[u.VM.ID]
		f.lastErr[vm.Metadata.ID] = u.Err.Error()
		child := f.restart(ctx, vm, restartParams{From: h.Metadata.ID})
		now := time.Now().UTC()
		child.State, child.Started, child.Finished = api.TaskFailed, &now, &now
		child.Error, _ = api.ErrorFrom(api.Errorf(api.ErrUnprocessable, "host %s failed, and vm %s fits on no other host: %v", h.Metadata.Name, vm.Metadata.Name, u.Err))
		if _, err := s.d.Tasks.Submit(ctx, s.d.State.Store.Txn(), child); err != nil {
			s.d.Log.Warn("cannot record a failed HA restart", "vm", vm.Metadata.Name, "err", err)
		}
	}
	return started
}

// restart counts an attempt to restart vm and makes its task, a child of
// the failover's.
func (f *failover) restart(ctx context.Context, vm *api.VM, p restartParams) *api.Task {
	f.attempts[vm.Metadata.ID]++
	p.Attempt = f.attempts[vm.Metadata.ID]
	child := tasks.New(ctx, api.OpVMHARestart, vm, p)
	child.Owner, child.Parent = Owner, f.t.Task.Metadata.ID
	return child
}

// runVMHARestart starts a VM of a failed host on another host and makes
// it the VM's host. The VM's lease refuses the start if a copy still runs
// on the failed host (cut off, not dead, and not isolated enough to stop
// it): then nothing moves.
func (s *Service) runVMHARestart(ctx context.Context, t *tasks.Run) (any, error) {
	var p restartParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, err := state.Read[*api.VM](ctx, s.d.State, t.Task.Target.ID)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", t.Task.Target.Name, err)
	}
	fromName := p.From
	if from, ok := state.Get[*api.Host](s.d.State, p.From); ok {
		fromName = from.Metadata.Name
	}
	res := api.HARestartResult{From: api.Ref{ID: p.From, Name: fromName}, Attempt: p.Attempt,
		Reason: fmt.Sprintf("host %s failed", fromName)}
	if vm.Spec.Host.ID != p.From {
		if t.Resumed && vm.Spec.Host.ID == p.Host {
			res.To = api.Ref{ID: p.Host}
			return res, nil // done before the leader changed
		}
		return nil, api.Errorf(api.ErrConflict, "vm %s is no longer on host %s", vm.Metadata.Name, fromName)
	}
	dst, cl, err := s.restartTarget(vm, p)
	if err != nil {
		return nil, err
	}
	res.To = api.Ref{ID: dst.Metadata.ID, Name: dst.Metadata.Name}
	// Room on the target is held; admission control does not apply to
	// the restarts it keeps room for.
	release, err := s.d.Places.Admit(vm, cl, dst, true)
	if err != nil {
		return nil, err
	}
	t.After(release)
	cfg, err := s.d.Inv.VMConfig(vm)
	if err != nil {
		return nil, err
	}
	t.Progress(ctx, 30, fmt.Sprintf("host %s failed; starting vm %s on host %s", fromName, vm.Metadata.Name, dst.Metadata.Name))
	st, err := s.start(ctx, t, vm, dst, cfg)
	if err != nil {
		return nil, err
	}
	msg := fmt.Sprintf("restarted by HA on host %s: host %s failed", dst.Metadata.Name, fromName)
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Spec.Host = api.Ref{ID: dst.Metadata.ID}
		v.Status.StateSeq = st.Seq
		v.Status.Guest, v.Status.VNC = st.Guest, st.VNC
		inventory.SetPower(v, st.PowerState, msg)
		return nil
	})
	return res, nil
}

// restartTarget checks that a restart is still wanted and returns the
// host it goes to and the VM's cluster.
func (s *Service) restartTarget(vm *api.VM, p restartParams) (*api.Host, *api.Cluster, error) {
	if h, _, why := s.stillFailed(p.From); h == nil {
		return nil, nil, api.Errorf(api.ErrConflict, "vm %s not restarted: %s", vm.Metadata.Name, why)
	}
	dst, ok := state.Get[*api.Host](s.d.State, p.Host)
	if !ok {
		return nil, nil, api.Errorf(api.ErrConflict, "the host chosen to restart vm %s on is gone", vm.Metadata.Name)
	}
	cl, ok := state.Get[*api.Cluster](s.d.State, vm.Spec.Cluster.ID)
	if !ok {
		return nil, nil, api.Errorf(api.ErrConflict, "vm %s is in no cluster", vm.Metadata.Name)
	}
	return dst, cl, nil
}

// start defines vm on host dst (as cfg says) and powers it on; a definition that did not
// start is taken back (not the disks: they are the VM's).
func (s *Service) start(ctx context.Context, t *tasks.Run, vm *api.VM, dst *api.Host, cfg hypervisor.VMConfig) (api.AgentVMState, error) {
	if _, err := s.d.Hosts.Define(ctx, hosts.TargetOf(dst), cfg); err != nil {
		return api.AgentVMState{}, fmt.Errorf("restart vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	st, err := s.d.Hosts.Power(ctx, hosts.TargetOf(dst), vm.Metadata.ID, api.PowerRequest{Action: api.ActionStart})
	if err != nil {
		cctx, cancel := t.CleanupCtx()
		if rerr := s.d.Hosts.Release(cctx, hosts.TargetOf(dst), vm.Metadata.ID, false); rerr != nil {
			s.d.Log.Warn("cannot remove a VM that did not restart", "vm", vm.Metadata.Name, "host", dst.Metadata.Name, "err", rerr)
		}
		cancel()
		return api.AgentVMState{}, fmt.Errorf("restart vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	return st, nil
}
