package maintenance

import (
	"context"
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// evacuation is the state of one host.maintenance.enter task's run.
type evacuation struct {
	s      *Service
	t      *tasks.Run
	h      *api.Host
	moved  int
	failed []string // the VMs that could not move, and why
}

type childResult struct {
	vm  string
	err error
}

// runHostEvacuate moves every VM off a host entering maintenance, a few at
// a time, each as its own vm.migrate task. If some cannot move, the host
// leaves maintenance again and the task says which VMs stayed.
func (s *Service) runHostEvacuate(ctx context.Context, t *tasks.Run) (any, error) {
	h, ok := state.Get[*api.Host](s.d.State, t.Task.Target.ID)
	if !ok {
		return nil, api.Errorf(api.ErrNotFound, "host %s is gone", t.Task.Target.Name)
	}
	e := &evacuation{s: s, t: t, h: h}
	// Migrations a previous leader started for this task go on by themselves.
	for _, c := range t.Children() {
		e.count(childResult{vm: c.Target.Name, err: t.WaitChild(ctx, c)})
	}
	// Plan again each round: VMs may have come or gone meanwhile.
	for round := 0; round < 3 && len(e.failed) == 0 && ctx.Err() == nil; round++ {
		plan, _, err := s.Plan(h)
		if err != nil {
			s.undoMaintenance(t, h)
			return nil, err
		}
		if len(plan) == 0 {
			break
		}
		e.wave(ctx, plan)
	}
	if ctx.Err() != nil {
		if t.Canceled(ctx) {
			s.undoMaintenance(t, h)
		}
		return nil, ctx.Err()
	}
	if len(e.failed) > 0 {
		s.undoMaintenance(t, h)
		return nil, api.Errorf(api.ErrUnprocessable, "host %s left maintenance: %d VMs could not move: %s (%d moved)",
			h.Metadata.Name, len(e.failed), strings.Join(inventory.FirstN(e.failed, 5), "; "), e.moved)
	}
	if left := s.d.Inv.Tally.VMsOn(h.Metadata.ID); len(left) > 0 {
		s.undoMaintenance(t, h)
		return nil, api.Errorf(api.ErrConflict, "host %s left maintenance: %d VMs are still on it", h.Metadata.Name, len(left))
	}
	return map[string]int{"moved": e.moved}, nil
}

// count notes how one VM's move ended.
func (e *evacuation) count(r childResult) {
	if r.err != nil {
		e.failed = append(e.failed, fmt.Sprintf("%s (%v)", r.vm, r.err))
	} else {
		e.moved++
	}
}

// wave runs the migrations of a plan, at most maxEvacuations at once,
// until each has ended (or, cancelled, those started have).
func (e *evacuation) wave(ctx context.Context, plan []Evacuation) {
	results := make(chan childResult, len(plan))
	active, next, finished := 0, 0, 0
	for finished < len(plan) {
		for active < maxEvacuations && next < len(plan) && ctx.Err() == nil {
			ev := plan[next]
			next++
			child, err := e.s.d.Migrations.Migrate(ctx, e.t, ev.VM, ev.To)
			if err != nil {
				results <- childResult{vm: ev.VM.Metadata.Name, err: err}
			} else {
				go func() { results <- childResult{vm: ev.VM.Metadata.Name, err: e.t.WaitChild(ctx, child)} }()
			}
			active++
		}
		if active == 0 {
			break // cancelled before everything started
		}
		res := <-results
		active--
		finished++
		e.count(res)
		e.t.Progress(ctx, 100*finished/len(plan), fmt.Sprintf("%d of %d VMs moved off host %s", e.moved, len(plan), e.h.Metadata.Name))
	}
}

// undoMaintenance takes a host out of maintenance after a failed or
// cancelled evacuation, so that it is in a known state.
func (s *Service) undoMaintenance(t *tasks.Run, h *api.Host) {
	ctx, cancel := t.CleanupCtx()
	defer cancel()
	err := state.Update(ctx, s.d.State, nil, h.Metadata.ID, func(host *api.Host) error {
		if !host.Spec.Maintenance {
			return state.ErrUnchanged
		}
		host.Spec.Maintenance = false
		host.Metadata.Generation++
		return nil
	})
	if err != nil {
		s.d.Log.Error("cannot take a host out of maintenance after a failed evacuation", "host", h.Metadata.Name, "err", err)
	}
}
