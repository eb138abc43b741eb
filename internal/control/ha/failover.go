package ha

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// pending lists the VMs of a failed host that HA must still restart:
// protected, powered on when the host was lost, and not the target of
// another unfinished task (other than those of this failover).
func (s *Service) pending(h *api.Host, cl *api.Cluster, failoverID string) []*api.VM {
	busy := s.busyVMs(failoverID)
	var out []*api.VM
	for _, vm := range s.d.Inv.VMsOn(h.Metadata.ID) {
		if vm.Status.Phase == api.PhaseReady && state.HoldsResources(vm) && inventory.HAProtected(cl, vm) && !busy[vm.Metadata.ID] {
			out = append(out, vm)
		}
	}
	return out
}

// stillFailed reads the host and its cluster again: the failover stops
// once the host is back or HA is off.
func (s *Service) stillFailed(hostID string) (*api.Host, *api.Cluster, string) {
	h, ok := state.Get[*api.Host](s.d.State, hostID)
	if !ok {
		return nil, nil, "the host was removed"
	}
	if h.Status.FailedAt.IsZero() {
		return nil, nil, "the host came back"
	}
	cl, ok := state.Get[*api.Cluster](s.d.State, h.Spec.Cluster.ID)
	if !ok || !cl.Spec.HA.On() {
		return nil, nil, "HA was turned off"
	}
	return h, cl, ""
}

// failover is the state of one host.failover task's run.
type failover struct {
	s        *Service
	t        *tasks.Run
	res      *api.HAFailoverResult
	attempts map[string]int    // restarts tried, by VM ID
	lastErr  map[string]string // why the last one failed
	// want is every VM the failover set out to restart (ID to name),
	// restarted those it did.
	want      map[string]string
	restarted map[string]bool
}

// runHostFailover restarts a failed host's protected VMs elsewhere: by
// priority, the next priority once the restarts of the one above are done
// and their VMs powered on (or their guests ready, as the cluster says),
// retrying those that could not restart a few times with growing delays.
// It can run again after a leader change: it works from the inventory.
func (s *Service) runHostFailover(ctx context.Context, t *tasks.Run) (any, error) {
	f := &failover{s: s, t: t, res: &api.HAFailoverResult{}, attempts: map[string]int{}, lastErr: map[string]string{},
		want: map[string]string{}, restarted: map[string]bool{}}
	// Restarts a previous leader started for this task go on by themselves.
	for _, c := range t.Children() {
		f.want[c.Target.ID] = c.Target.Name
		f.wait(ctx, c)
	}
	retry := false
	for ctx.Err() == nil {
		h, cl, stop := s.stillFailed(t.Task.Target.ID)
		if h == nil {
			f.res.Outcome = stop
			break
		}
		left, tried := f.left(h, cl)
		if len(left) == 0 {
			f.res.Outcome = "done"
			break
		}
		if retry {
			// Wait longer after each attempt, then look again: the host
			// may be back, or the VMs' leases free.
			delay := s.d.RetryDelay << min(max(tried-1, 0), 6)
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

// left is what the failover must still restart, and the most attempts
// any of them had.
func (f *failover) left(h *api.Host, cl *api.Cluster) (left []*api.VM, tried int) {
	for _, vm := range f.s.pending(h, cl, f.t.Task.Metadata.ID) {
		f.want[vm.Metadata.ID] = vm.Metadata.Name
		if n := f.attempts[vm.Metadata.ID]; n < maxAttempts {
			left = append(left, vm)
			tried = max(tried, n)
		}
	}
	return left, tried
}

// wait waits for a restart to end and notes how it did.
func (f *failover) wait(ctx context.Context, c *api.Task) bool {
	if err := f.t.WaitChild(ctx, c); err != nil {
		f.lastErr[c.Target.ID] = err.Error()
		return false
	}
	f.restarted[c.Target.ID] = true
	return true
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
			if f.wait(ctx, c) {
				ok = append(ok, c)
			}
		}
		if cl.Spec.HA.RestartCondition == api.RestartWhenGuestReady && len(ok) > 0 {
			f.s.waitGuestsReady(ctx, f.t, ok, time.Duration(cl.Spec.HA.RestartTimeoutSeconds)*time.Second)
		}
	}
}

// waitGuestsReady waits until the guest agents of restarted VMs answer,
// at most timeout: the next priority waits for them.
func (s *Service) waitGuestsReady(ctx context.Context, t *tasks.Run, restarts []*api.Task, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		ready := 0
		for _, c := range restarts {
			if vm, ok := state.Get[*api.VM](s.d.State, c.Target.ID); ok {
				if g := vm.Status.Guest; g != nil && g.State == api.GuestRunning {
					ready++
				}
			}
		}
		if ready == len(restarts) {
			return
		}
		t.Progress(ctx, 50, fmt.Sprintf("waiting for %d of %d restarted guests to answer", len(restarts)-ready, len(restarts)))
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}
