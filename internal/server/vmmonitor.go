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

// monitorGuests (leader only) resets the VMs whose guests hang.
func (s *Server) monitorGuests(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	capped := map[string]bool{} // VMs whose resets ran out, logged once
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		// Decide from a snapshot, then queue outside the cache's lock.
		type reset struct {
			vm  *api.VM
			why string
		}
		var resets []reset
		var clusters []*api.Cluster
		s.cache.Each(api.KindCluster, func(o api.Object) {
			if cl := o.(*api.Cluster); cl.Spec.HA.On() && cl.Spec.HA.VMMonitoring.Enabled {
				clusters = append(clusters, cl)
			}
		})
		for _, cl := range clusters {
			for _, h := range s.cache.List(api.KindHost) {
				if h.(*api.Host).Spec.Cluster.ID != cl.Metadata.ID || h.(*api.Host).Status.Connection != api.HostConnected {
					continue
				}
				for _, vm := range s.inv.VMsOn(h.GetMeta().ID) {
					if !inventory.HAProtected(cl, vm) {
						continue
					}
					ok, why := guestVerdict(vm, cl.Spec.HA.VMMonitoring, now)
					switch {
					case ok:
						delete(capped, vm.Metadata.ID)
						resets = append(resets, reset{vm, why})
					case vm.Status.Guest != nil && vm.Status.Guest.State == api.GuestNotResponding && !capped[vm.Metadata.ID] &&
						len(vm.Status.HAResets) >= cl.Spec.HA.VMMonitoring.MaxResets:
						capped[vm.Metadata.ID] = true
						s.log.Warn("VM monitoring: the guest still hangs, and its resets ran out", "vm", vm.Metadata.Name, "why", why)
					}
				}
			}
		}
		if len(resets) == 0 {
			continue
		}
		busy := s.busyVMs()
		for _, r := range resets {
			if busy[r.vm.Metadata.ID] {
				continue
			}
			t := tasks.New(ctx, api.OpVMHAReset, r.vm, nil)
			t.Owner, t.Message = ownerHA, r.why
			if _, err := s.submitter.Submit(ctx, s.store.Txn(), t); err != nil {
				s.log.Warn("VM monitoring: cannot queue a reset", "vm", r.vm.Metadata.Name, "err", err)
			} else {
				s.log.Warn("VM monitoring: resetting a hung guest", "vm", r.vm.Metadata.Name, "why", r.why)
			}
		}
	}
}

// runVMHAReset resets a VM whose guest hangs, keeping what its console
// showed before, and counts the reset against the cluster's limit.
func (s *Server) runVMHAReset(ctx context.Context, t *tasks.Run) (any, error) {
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	co, ok := s.cache.Get(api.KindCluster, vm.Spec.Cluster.ID)
	if !ok || !co.(*api.Cluster).Spec.HA.On() {
		return nil, api.Errorf(api.ErrConflict, "vm %s: HA is off in its cluster", vm.Metadata.Name)
	}
	m := co.(*api.Cluster).Spec.HA.VMMonitoring
	reset, why := guestVerdict(vm, m, time.Now())
	if !reset {
		return nil, api.Errorf(api.ErrConflict, "vm %s not reset: %s", vm.Metadata.Name, why)
	}
	res := api.VMResetResult{Reason: why}
	if log, err := s.agents.ConsoleLog(ctx, hosts.TargetOf(h), vm.Metadata.ID, consoleKept); err == nil {
		res.ConsoleLog = string(log)
	} else {
		res.ConsoleLog = "(console log unavailable: " + err.Error() + ")"
	}
	st, err := s.agents.Power(ctx, hosts.TargetOf(h), vm.Metadata.ID, api.PowerRequest{Action: api.ActionReset})
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
