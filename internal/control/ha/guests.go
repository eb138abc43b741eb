package ha

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

// VM monitoring (vSphere HA's VM monitoring): a powered-on VM whose guest
// agent stopped answering for the cluster's failure interval is reset, at
// most MaxResets times in ResetWindow, and only once it has run for
// MinUptime since it was powered on or last reset by HA.

// consoleKept is how much of the console log a reset task keeps.
const consoleKept = 16 << 10

// guestVerdict says whether VM monitoring resets a VM now, and why (or
// why not, for the log). It is pure: the VM, the settings and the time.
func guestVerdict(vm *api.VM, m api.VMMonitoring, now time.Time) (reset bool, why string) {
	if vm.Status.PowerState != api.PowerOn || vm.Status.Guest == nil {
		return false, "not running, or no guest agent seen"
	}
	g := vm.Status.Guest
	lastReset := time.Time{}
	window := time.Duration(m.ResetWindowSeconds) * time.Second
	recent := 0
	for _, r := range vm.Status.HAResets {
		if now.Sub(r) < window {
			recent++
		}
		if r.After(lastReset) {
			lastReset = r
		}
	}
	// Silent: it answered once and stopped, or it has not answered since
	// VM monitoring reset it.
	resetByUs := lastReset.After(vm.Status.PowerChanged)
	switch {
	case g.State == api.GuestRunning:
		return false, "guest agent answers"
	case (g.State == api.GuestNotInstalled || g.State == api.GuestNotRunning) && !resetByUs:
		return false, "no guest agent answered since boot"
	}
	since := vm.Status.PowerChanged
	if resetByUs {
		since = lastReset
	}
	if uptime := now.Sub(since); uptime < time.Duration(m.MinUptimeSeconds)*time.Second {
		return false, fmt.Sprintf("up only %s", uptime.Round(time.Second))
	}
	silent := now.Sub(latest(g.LastSeen, since))
	if silent < time.Duration(m.FailureIntervalSeconds)*time.Second {
		return false, fmt.Sprintf("silent only %s", silent.Round(time.Second))
	}
	if recent >= m.MaxResets {
		return false, fmt.Sprintf("already reset %d times in %s", recent, window)
	}
	return true, fmt.Sprintf("guest agent silent for %s; reset %d of %d in %s", silent.Round(time.Second), recent+1, m.MaxResets, window)
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// guestReset is a reset VM monitoring decided, and why.
type guestReset struct {
	vm  *api.VM
	why string
}

// MonitorGuests (leader only) resets the VMs whose guests hang, judging
// them every second until ctx ends.
func (s *Service) MonitorGuests(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	capped := map[string]bool{} // VMs whose resets ran out, logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		// Decide from a snapshot, then queue outside the cache's lock.
		if resets := s.hungGuests(time.Now(), capped); len(resets) > 0 {
			s.queueResets(ctx, resets)
		}
	}
}

// hungGuests picks the protected VMs of connected hosts in clusters with
// VM monitoring that are to be reset at time now.
func (s *Service) hungGuests(now time.Time, capped map[string]bool) []guestReset {
	clusters := state.List(s.d.State, func(cl *api.Cluster) bool { return cl.Spec.HA.On() && cl.Spec.HA.VMMonitoring.Enabled })
	var resets []guestReset
	for _, cl := range clusters {
		for _, h := range state.List[*api.Host](s.d.State, nil) {
			if h.Spec.Cluster.ID != cl.Metadata.ID || h.Status.Connection != api.HostConnected {
				continue
			}
			for _, vm := range s.d.Inv.VMsOn(h.Metadata.ID) {
				if !inventory.HAProtected(cl, vm) {
					continue
				}
				ok, why := guestVerdict(vm, cl.Spec.HA.VMMonitoring, now)
				switch {
				case ok:
					delete(capped, vm.Metadata.ID)
					resets = append(resets, guestReset{vm, why})
				case vm.Status.Guest != nil && vm.Status.Guest.State == api.GuestNotResponding && !capped[vm.Metadata.ID] &&
					len(vm.Status.HAResets) >= cl.Spec.HA.VMMonitoring.MaxResets:
					capped[vm.Metadata.ID] = true
					s.d.Log.Warn("VM monitoring: the guest still hangs, and its resets ran out", "vm", vm.Metadata.Name, "why", why)
				}
			}
		}
	}
	return resets
}

// queueResets queues a vm.ha-reset task for each VM no other task works on.
func (s *Service) queueResets(ctx context.Context, resets []guestReset) {
	busy := s.busyVMs("")
	for _, r := range resets {
		if busy[r.vm.Metadata.ID] {
			continue
		}
		t := tasks.New(ctx, api.OpVMHAReset, r.vm, nil)
		t.Owner, t.Message = Owner, r.why
		if _, err := s.d.Tasks.Submit(ctx, s.d.State.Store.Txn(), t); err != nil {
			s.d.Log.Warn("VM monitoring: cannot queue a reset", "vm", r.vm.Metadata.Name, "err", err)
		} else {
			s.d.Log.Warn("VM monitoring: resetting a hung guest", "vm", r.vm.Metadata.Name, "why", r.why)
		}
	}
}

// runVMHAReset resets a VM whose guest hangs, keeping what its console
// showed before, and counts the reset against the cluster's limit.
func (s *Service) runVMHAReset(ctx context.Context, t *tasks.Run) (any, error) {
	vm, h, err := s.d.Inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	cl, ok := state.Get[*api.Cluster](s.d.State, vm.Spec.Cluster.ID)
	if !ok || !cl.Spec.HA.On() {
		return nil, api.Errorf(api.ErrConflict, "vm %s: HA is off in its cluster", vm.Metadata.Name)
	}
	m := cl.Spec.HA.VMMonitoring
	reset, why := guestVerdict(vm, m, time.Now())
	if !reset {
		return nil, api.Errorf(api.ErrConflict, "vm %s not reset: %s", vm.Metadata.Name, why)
	}
	res := api.VMResetResult{Reason: why}
	if log, err := s.d.Hosts.ConsoleLog(ctx, hosts.TargetOf(h), vm.Metadata.ID, consoleKept); err == nil {
		res.ConsoleLog = string(log)
	} else {
		res.ConsoleLog = "(console log unavailable: " + err.Error() + ")"
	}
	st, err := s.d.Hosts.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, api.PowerRequest{Action: api.ActionReset})
	if err != nil {
		return nil, fmt.Errorf("reset vm %s on host %s: %w", vm.Metadata.Name, h.Metadata.Name, err)
	}
	now := time.Now().UTC()
	window := time.Duration(m.ResetWindowSeconds) * time.Second
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		kept := v.Status.HAResets[:0:0]
		for _, r := range v.Status.HAResets {
			if now.Sub(r) < window {
				kept = append(kept, r)
			}
		}
		v.Status.HAResets = append(kept, now)
		if err := inventory.VMStateChange(st)(v); err != nil && !errors.Is(err, state.ErrUnchanged) {
			return err
		}
		return nil
	})
	return res, nil
}
