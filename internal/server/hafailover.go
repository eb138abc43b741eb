package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/scheduler"
)

// haRestartParams are a vm.ha-restart task's parameters.
type haRestartParams struct {
	From    string `json:"from"` // the failed host's ID
	Host    string `json:"host"` // where to restart
	Attempt int    `json:"attempt"`
}

// haPending lists the VMs of a failed host that HA must still restart:
// protected, powered on when the host was lost, and not the target of
// another unfinished task (other than those of this failover).
func (s *Server) haPending(h *api.Host, cl *api.Cluster, failoverID string) []*api.VM {
	busy := map[string]bool{}
	s.cache.Each(api.KindTask, func(o api.Object) {
		if t := o.(*api.Task); t.Target.Kind == api.KindVM && !api.TaskDone(t.State) && t.Parent != failoverID {
			busy[t.Target.ID] = true
		}
	})
	var out []*api.VM
	for _, vm := range s.inv.VMsOn(h.Metadata.ID) {
		if vm.Status.Phase == api.PhaseReady && state.HoldsResources(vm) && inventory.HAProtected(cl, vm) && !busy[vm.Metadata.ID] {
			out = append(out, vm)
		}
	}
	return out
}

// stillFailed reads the host and its cluster again: the failover stops
// once the host is back or HA is off.
func (s *Server) stillFailed(hostID string) (*api.Host, *api.Cluster, string) {
	o, ok := s.cache.Get(api.KindHost, hostID)
	if !ok {
		return nil, nil, "the host was removed"
	}
	h := o.(*api.Host)
	if h.Status.FailedAt.IsZero() {
		return nil, nil, "the host came back"
	}
	co, ok := s.cache.Get(api.KindCluster, h.Spec.Cluster.ID)
	if !ok || !co.(*api.Cluster).Spec.HA.On() {
		return nil, nil, "HA was turned off"
	}
	return h, co.(*api.Cluster), ""
}

// runHostFailover restarts a failed host's protected VMs elsewhere: by
// priority, the next priority once the restarts of the one above are done
// and their VMs powered on (or their guests ready, as the cluster says),
// retrying those that could not restart a few times with growing delays.
// It can run again after a leader change: it works from the inventory.
func (s *Server) runHostFailover(ctx context.Context, t *tasks.Run) (any, error) {
	f := &failover{s: s, t: t, res: &api.HAFailoverResult{}, attempts: map[string]int{}, lastErr: map[string]string{},
		want: map[string]string{}, restarted: map[string]bool{}}
	res, attempts := f.res, f.attempts
	// Restarts a previous leader started for this task go on by themselves.
	var inherited []*api.Task
	s.cache.Each(api.KindTask, func(o api.Object) {
		if c := o.(*api.Task); c.Parent == t.Task.Metadata.ID && !api.TaskDone(c.State) {
			inherited = append(inherited, c)
		}
	})
	for _, c := range inherited {
		f.want[c.Target.ID] = c.Target.Name
		if r := s.waitChild(ctx, t, c, c.Target.Name); r.err == nil {
			f.restarted[c.Target.ID] = true
		} else {
			f.lastErr[c.Target.ID] = r.err.Error()
		}
	}
	retry := false
	for ctx.Err() == nil {
		h, cl, stop := s.stillFailed(t.Task.Target.ID)
		if h == nil {
			res.Outcome = stop
			break
		}
		var left []*api.VM
		tried := 0
		for _, vm := range s.haPending(h, cl, t.Task.Metadata.ID) {
			f.want[vm.Metadata.ID] = vm.Metadata.Name
			if n := attempts[vm.Metadata.ID]; n < haMaxAttempts {
				left = append(left, vm)
				tried = max(tried, n)
			}
		}
		if len(left) == 0 {
			res.Outcome = "done"
			break
		}
		if retry {
			// Wait longer after each attempt, then look again: the host
			// may be back, or the VMs' leases free.
			delay := haRetryDelay << min(max(tried-1, 0), 6)
			t.Progress(ctx, 50, fmt.Sprintf("%d VMs of host %s not restarted yet; trying again in %s", len(left), h.Metadata.Name, delay))
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			retry = false
			continue
		}
		f.waves(ctx, h, cl, left)
		retry = true
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return f.report()
}

// report says how many of the VMs HA set out to restart it did, and why
// each other one was not: a failover that restarted nothing must say so,
// not end as a silent success.
func (f *failover) report() (any, error) {
	res, name := f.res, f.t.Task.Target.Name
	res.Restarted = len(f.restarted)
	var ids []string
	for id := range f.want {
		if !f.restarted[id] {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int { return strings.Compare(f.want[a], f.want[b]) })
	for _, id := range ids {
		why := f.lastErr[id]
		if why == "" {
			why = "not tried"
		}
		res.Failed = append(res.Failed, fmt.Sprintf("%s (%s)", f.want[id], why))
	}
	summary := fmt.Sprintf("%d of %d restarted", res.Restarted, len(f.want))
	if len(res.Failed) == 0 {
		if len(f.want) == 0 {
			summary = "no protected VM to restart"
		}
		if res.Outcome != "done" {
			summary += "; " + res.Outcome
		}
		f.t.Summary = fmt.Sprintf("host %s failed; %s", name, summary)
		return res, nil
	}
	// Stopped early (the host came back, HA was turned off): the VMs
	// left may still run there, but HA did not restart them, and says so.
	class, why := api.ErrUnprocessable, ""
	if res.Outcome != "done" {
		class, why = api.ErrConflict, res.Outcome+"; "
	}
	return res, api.Errorf(class, "host %s failed; %s: %s%s", name, summary, why, strings.Join(inventory.FirstN(res.Failed, 5), "; "))
}

// failover is the state of one host.failover task's run.
type failover struct {
	s        *Server
	t        *tasks.Run
	res      *api.HAFailoverResult
	attempts map[string]int    // restarts tried, by VM ID
	lastErr  map[string]string // why the last one failed
	// want is every VM the failover set out to restart (ID to name),
	// restarted those it did.
	want      map[string]string
	restarted map[string]bool
}

// waves restarts VMs by priority: each priority's restarts run at once,
// and the next priority waits for them.
func (f *failover) waves(ctx context.Context, h *api.Host, cl *api.Cluster, vms []*api.VM) {
	byPriority := map[string][]*api.VM{}
	for _, vm := range vms {
		p := api.HAPriorityOf(vm)
		byPriority[p] = append(byPriority[p], vm)
	}
	for _, prio := range []string{api.HAPriorityHigh, api.HAPriorityMedium, api.HAPriorityLow} {
		group := byPriority[prio]
		if len(group) == 0 || ctx.Err() != nil {
			continue
		}
		if h, _, _ = f.s.stillFailed(h.Metadata.ID); h == nil {
			return
		}
		f.t.Progress(ctx, 10, fmt.Sprintf("restarting %d %s-priority VMs of host %s", len(group), prio, h.Metadata.Name))
		var ok []*api.Task
		for _, c := range f.group(ctx, h, cl, group) {
			// They run at once; waiting for each in turn ends with the last.
			if r := f.s.waitChild(ctx, f.t, c, c.Target.Name); r.err != nil {
				f.lastErr[c.Target.ID] = r.err.Error()
				continue
			}
			f.restarted[c.Target.ID] = true
			ok = append(ok, c)
		}
		if cl.Spec.HA.RestartCondition == api.RestartWhenGuestReady && len(ok) > 0 {
			f.s.waitGuestsReady(ctx, f.t, ok, time.Duration(cl.Spec.HA.RestartTimeoutSeconds)*time.Second)
		}
	}
}

// group plans and queues the restarts of one priority's VMs. VMs that fit
// nowhere get a failed task that says why.
func (f *failover) group(ctx context.Context, h *api.Host, cl *api.Cluster, group []*api.VM) []*api.Task {
	s, t := f.s, f.t
	byID := map[string]*api.VM{}
	var want []scheduler.HAVM
	for _, vm := range group {
		byID[vm.Metadata.ID] = vm
		want = append(want, s.haVM(vm))
	}
	hosts := s.places.Hosts(cl.Metadata.ID)
	// Only hosts that run the same hypervisor: a guest restarted elsewhere
	// needs the same machine and CPU model.
	var fit []scheduler.Host
	for _, sh := range hosts {
		if o, ok := s.cache.Get(api.KindHost, sh.ID); ok && o.(*api.Host).Status.Driver == h.Status.Driver {
			fit = append(fit, sh)
		}
	}
	placed, unplaced := scheduler.PlanRestarts(fit, want, scheduler.Ratios{CPU: cl.Spec.CPUOvercommit, Memory: cl.Spec.MemoryOvercommit})
	var started []*api.Task
	for _, p := range placed {
		vm := byID[p.VM.ID]
		f.attempts[vm.Metadata.ID]++
		child := tasks.New(ctx, api.OpVMHARestart, vm, haRestartParams{From: h.Metadata.ID, Host: p.Host.ID, Attempt: f.attempts[vm.Metadata.ID]})
		child.Owner, child.Parent = ownerHA, t.Task.Metadata.ID
		child.Message = fmt.Sprintf("host %s failed; restarting on host %s", h.Metadata.Name, p.Host.Name)
		if c, err := s.submitter.Submit(ctx, s.store.Txn(), child); err == nil {
			started = append(started, c)
		} else {
			f.lastErr[vm.Metadata.ID] = err.Error()
		}
	}
	for _, u := range unplaced {
		vm := byID[u.VM.ID]
		f.attempts[vm.Metadata.ID]++
		f.lastErr[vm.Metadata.ID] = u.Err.Error()
		child := tasks.New(ctx, api.OpVMHARestart, vm, haRestartParams{From: h.Metadata.ID, Attempt: f.attempts[vm.Metadata.ID]})
		child.Owner, child.Parent = ownerHA, t.Task.Metadata.ID
		now := time.Now().UTC()
		child.State, child.Started, child.Finished = api.TaskFailed, &now, &now
		child.Error, _ = api.ErrorFrom(api.Errorf(api.ErrUnprocessable, "host %s failed, and vm %s fits on no other host: %v", h.Metadata.Name, vm.Metadata.Name, u.Err))
		if _, err := s.submitter.Submit(ctx, s.store.Txn(), child); err != nil {
			s.log.Warn("cannot record a failed HA restart", "vm", vm.Metadata.Name, "err", err)
		}
	}
	return started
}

// waitGuestsReady waits until the guest agents of restarted VMs answer,
// at most timeout: the next priority waits for them.
func (s *Server) waitGuestsReady(ctx context.Context, t *tasks.Run, tasks []*api.Task, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		ready := 0
		for _, c := range tasks {
			if o, ok := s.cache.Get(api.KindVM, c.Target.ID); ok {
				if g := o.(*api.VM).Status.Guest; g != nil && g.State == api.GuestRunning {
					ready++
				}
			}
		}
		if ready == len(tasks) {
			return
		}
		t.Progress(ctx, 50, fmt.Sprintf("waiting for %d of %d restarted guests to answer", len(tasks)-ready, len(tasks)))
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runVMHARestart starts a VM of a failed host on another host and makes
// it the VM's host. The VM's lease refuses the start if a copy still runs
// on the failed host (cut off, not dead, and not isolated enough to stop
// it): then nothing moves.
func (s *Server) runVMHARestart(ctx context.Context, t *tasks.Run) (any, error) {
	var p haRestartParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	o, err := s.store.Get(ctx, api.KindVM, t.Task.Target.ID)
	if err != nil {
		return nil, fmt.Errorf("vm %s: %w", t.Task.Target.Name, err)
	}
	vm := o.(*api.VM)
	fromName := p.From
	if o, ok := s.cache.Get(api.KindHost, p.From); ok {
		fromName = o.GetMeta().Name
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
	if h, _, why := s.stillFailed(p.From); h == nil {
		return nil, api.Errorf(api.ErrConflict, "vm %s not restarted: %s", vm.Metadata.Name, why)
	}
	o, ok := s.cache.Get(api.KindHost, p.Host)
	if !ok {
		return nil, api.Errorf(api.ErrConflict, "the host chosen to restart vm %s on is gone", vm.Metadata.Name)
	}
	dst := o.(*api.Host)
	res.To = api.Ref{ID: dst.Metadata.ID, Name: dst.Metadata.Name}
	co, ok := s.cache.Get(api.KindCluster, vm.Spec.Cluster.ID)
	if !ok {
		return nil, api.Errorf(api.ErrConflict, "vm %s is in no cluster", vm.Metadata.Name)
	}
	// Room on the target is held; admission control does not apply to
	// the restarts it keeps room for.
	release, err := s.places.Admit(vm, co.(*api.Cluster), dst, true)
	if err != nil {
		return nil, err
	}
	t.After(release)
	cfg, err := s.inv.VMConfig(vm)
	if err != nil {
		return nil, err
	}
	t.Progress(ctx, 30, fmt.Sprintf("host %s failed; starting vm %s on host %s", fromName, vm.Metadata.Name, dst.Metadata.Name))
	if _, err := s.agents.Define(ctx, hosts.TargetOf(dst), cfg); err != nil {
		return nil, fmt.Errorf("restart vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	st, err := s.agents.Power(ctx, hosts.TargetOf(dst), vm.Metadata.ID, api.PowerRequest{Action: api.ActionStart})
	if err != nil {
		// Take the definition back (not the disks: they are the VM's).
		cctx, cancel := t.CleanupCtx()
		if rerr := s.agents.Release(cctx, hosts.TargetOf(dst), vm.Metadata.ID, false); rerr != nil {
			s.log.Warn("cannot remove a VM that did not restart", "vm", vm.Metadata.Name, "host", dst.Metadata.Name, "err", rerr)
		}
		cancel()
		return nil, fmt.Errorf("restart vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
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
