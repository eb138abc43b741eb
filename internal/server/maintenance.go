package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/migration"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/scheduler"
)

// maxEvacuations is how many VMs leave a host at once in maintenance.
const maxEvacuations = 4

// POST /api/v1/hosts/{name}/maintenance {"action": "enter"|"exit"}. Enter
// keeps new VMs off the host at once, then a task moves its VMs away:
// running ones live, powered-off ones by registration.
func (s *Server) hostMaintenance(w http.ResponseWriter, r *http.Request) {
	var req api.MaintenanceRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Action != api.MaintenanceEnter && req.Action != api.MaintenanceExit {
		fail(w, api.Errorf(api.ErrInvalid, "maintenance action must be enter or exit, got %q", req.Action))
		return
	}
	enter := req.Action == api.MaintenanceEnter
	evacuate := false
	t, err := s.modify(r, api.KindHost, func(o api.Object) error {
		h := o.(*api.Host)
		if enter == h.Spec.Maintenance {
			state := "in"
			if !h.Spec.Maintenance {
				state = "not in"
			}
			return api.Errorf(api.ErrConflict, "host %q is already %s maintenance", h.Metadata.Name, state)
		}
		if enter {
			if _, _, err := s.planEvacuation(h); err != nil {
				return err
			}
			evacuate = len(s.tally.VMsOn(h.Metadata.ID)) > 0
		}
		h.Spec.Maintenance = enter
		return nil
	}, func(upd api.Object) *api.Task {
		t := tasks.New(r.Context(), "host.maintenance."+req.Action, upd, req)
		if !evacuate {
			tasks.Done(t, nil)
		}
		return t
	})
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// evacuation is one VM's way off a host.
type evacuation struct {
	vm *api.VM
	to string // host ID
}

// planEvacuation picks a new host for every VM of a host: running VMs go
// where they fit (and the hypervisor matches), powered-off ones anywhere
// that reaches their datastores. The plan counts what it places, so VMs
// spread and never overfill a host. It fails, naming the VMs, when some
// cannot go anywhere.
func (s *Server) planEvacuation(h *api.Host) ([]evacuation, []string, error) {
	co, ok := s.cache.Get(api.KindCluster, h.Spec.Cluster.ID)
	if !ok {
		return nil, nil, api.Errorf(api.ErrConflict, "host %s is in no cluster", h.Metadata.Name)
	}
	cl := co.(*api.Cluster)
	hosts := map[string]*api.Host{}
	snapshot := s.places.Hosts(cl.Metadata.ID)
	var candidates []scheduler.Host
	for _, sh := range snapshot {
		if sh.ID == h.Metadata.ID {
			continue
		}
		if o, ok := s.cache.Get(api.KindHost, sh.ID); ok {
			hosts[sh.ID] = o.(*api.Host)
			candidates = append(candidates, sh)
		}
	}
	vms := s.inv.VMsOn(h.Metadata.ID)
	sort.Slice(vms, func(i, j int) bool { // the biggest first: they are the hardest to fit
		return vms[i].Spec.MemoryBytes > vms[j].Spec.MemoryBytes
	})
	var plan []evacuation
	var stuck []string
	for _, vm := range vms {
		req := scheduler.Request{CPUOvercommit: cl.Spec.CPUOvercommit, MemoryOvercommit: cl.Spec.MemoryOvercommit}
		for _, d := range vm.Spec.Disks {
			req.Datastores = append(req.Datastores, d.Datastore.ID)
		}
		if io, ok := s.cache.Get(api.KindImage, vm.Spec.Image.ID); ok {
			req.Datastores = append(req.Datastores, io.(*api.Image).Spec.Datastore.ID)
		}
		live := vm.Status.PowerState == api.PowerOn
		if live {
			req.CPUs, req.MemoryBytes = vm.Spec.CPUs, int64(vm.Spec.MemoryBytes)
		}
		var fit []scheduler.Host
		for _, c := range candidates {
			if live && (hosts[c.ID].Status.Hypervisor != h.Status.Hypervisor || hosts[c.ID].Status.Accel != h.Status.Accel) {
				continue
			}
			fit = append(fit, c)
		}
		switch vm.Status.PowerState {
		case api.PowerSuspended, api.PowerUnknown:
			stuck = append(stuck, fmt.Sprintf("%s (%s)", vm.Metadata.Name, vm.Status.PowerState))
			continue
		}
		to, err := scheduler.Place(fit, req)
		if err != nil {
			stuck = append(stuck, fmt.Sprintf("%s (%v)", vm.Metadata.Name, err))
			continue
		}
		plan = append(plan, evacuation{vm: vm, to: to.ID})
		for i := range candidates { // count it, for the next VMs
			if candidates[i].ID == to.ID {
				candidates[i].AllocCPUs += vm.Spec.CPUs
				candidates[i].AllocMemory += int64(vm.Spec.MemoryBytes)
				if live {
					candidates[i].OnCPUs += vm.Spec.CPUs
					candidates[i].OnMemory += int64(vm.Spec.MemoryBytes)
				}
			}
		}
	}
	if len(stuck) > 0 {
		return plan, stuck, api.Errorf(api.ErrUnprocessable, "cannot evacuate host %s: %d VMs have nowhere to go: %s",
			h.Metadata.Name, len(stuck), strings.Join(inventory.FirstN(stuck, 5), "; "))
	}
	return plan, nil, nil
}

// runHostEvacuate moves every VM off a host entering maintenance, a few at
// a time, each as its own vm.migrate task. If some cannot move, the host
// leaves maintenance again and the task says which VMs stayed.
func (s *Server) runHostEvacuate(ctx context.Context, t *tasks.Run) (any, error) {
	o, ok := s.cache.Get(api.KindHost, t.Task.Target.ID)
	if !ok {
		return nil, api.Errorf(api.ErrNotFound, "host %s is gone", t.Task.Target.Name)
	}
	h := o.(*api.Host)
	var failed []string
	moved := 0
	// Migrations a previous leader started for this task go on by themselves.
	var inherited []*api.Task
	s.cache.Each(api.KindTask, func(o api.Object) {
		if c := o.(*api.Task); c.Parent == t.Task.Metadata.ID && !api.TaskDone(c.State) {
			inherited = append(inherited, c)
		}
	})
	for _, c := range inherited {
		if res := s.waitChild(ctx, t, c, c.Target.Name); res.err != nil {
			failed = append(failed, fmt.Sprintf("%s (%v)", res.vm, res.err))
		} else {
			moved++
		}
	}
	// Plan again each round: VMs may have come or gone meanwhile.
	for round := 0; round < 3 && len(failed) == 0 && ctx.Err() == nil; round++ {
		plan, _, err := s.planEvacuation(h)
		if err != nil {
			s.undoMaintenance(t, h)
			return nil, err
		}
		if len(plan) == 0 {
			break
		}
		results := make(chan childResult, len(plan))
		active, next, finished := 0, 0, 0
		for finished < len(plan) {
			for active < maxEvacuations && next < len(plan) && ctx.Err() == nil {
				e := plan[next]
				next++
				child, err := s.startChildMigration(ctx, t, e)
				if err != nil {
					results <- childResult{vm: e.vm.Metadata.Name, err: err}
				} else {
					go func() { results <- s.waitChild(ctx, t, child, e.vm.Metadata.Name) }()
				}
				active++
			}
			if active == 0 {
				break // cancelled before everything started
			}
			res := <-results
			active--
			finished++
			if res.err != nil {
				failed = append(failed, fmt.Sprintf("%s (%v)", res.vm, res.err))
			} else {
				moved++
			}
			t.Progress(ctx, 100*finished/len(plan), fmt.Sprintf("%d of %d VMs moved off host %s", moved, len(plan), h.Metadata.Name))
		}
	}
	if ctx.Err() != nil {
		if t.Canceled(ctx) {
			s.undoMaintenance(t, h)
		}
		return nil, ctx.Err()
	}
	if len(failed) > 0 {
		s.undoMaintenance(t, h)
		return nil, api.Errorf(api.ErrUnprocessable, "host %s left maintenance: %d VMs could not move: %s (%d moved)",
			h.Metadata.Name, len(failed), strings.Join(inventory.FirstN(failed, 5), "; "), moved)
	}
	if left := s.tally.VMsOn(h.Metadata.ID); len(left) > 0 {
		s.undoMaintenance(t, h)
		return nil, api.Errorf(api.ErrConflict, "host %s left maintenance: %d VMs are still on it", h.Metadata.Name, len(left))
	}
	return map[string]int{"moved": moved}, nil
}

type childResult struct {
	vm  string
	err error
}

// startChildMigration queues the migration of one VM as a task of its own.
func (s *Server) startChildMigration(ctx context.Context, t *tasks.Run, e evacuation) (*api.Task, error) {
	return s.migration.QueueChild(ctx, migration.Child{VM: e.vm, HostID: e.to, Parent: t.Task})
}

// waitChild waits for a child task to end; a cancel of the parent cancels it.
func (s *Server) waitChild(ctx context.Context, t *tasks.Run, child *api.Task, vm string) childResult {
	rev := child.Metadata.Revision
	for {
		o, err := s.cache.WaitChange(ctx, api.KindTask, child.Metadata.ID, rev)
		if err != nil {
			if ctx.Err() != nil && t.Canceled(ctx) {
				cctx, cancel := t.CleanupCtx()
				_ = state.UpdateKind(cctx, s.st, nil, api.KindTask, child.Metadata.ID, func(o api.Object) error {
					if tk := o.(*api.Task); !api.TaskDone(tk.State) {
						tk.CancelRequested = true
						return nil
					}
					return state.ErrUnchanged
				})
				cancel()
			}
			return childResult{vm: vm, err: err}
		}
		tk := o.(*api.Task)
		rev = tk.Metadata.Revision
		if api.TaskDone(tk.State) {
			if tk.State == api.TaskSucceeded {
				return childResult{vm: vm}
			}
			if tk.Error != nil {
				return childResult{vm: vm, err: errors.New(tk.Error.Message)}
			}
			return childResult{vm: vm, err: errors.New(tk.State)}
		}
	}
}

// undoMaintenance takes a host out of maintenance after a failed or
// cancelled evacuation, so that it is in a known state.
func (s *Server) undoMaintenance(t *tasks.Run, h *api.Host) {
	ctx, cancel := t.CleanupCtx()
	defer cancel()
	err := state.UpdateKind(ctx, s.st, nil, api.KindHost, h.Metadata.ID, func(o api.Object) error {
		host := o.(*api.Host)
		if !host.Spec.Maintenance {
			return state.ErrUnchanged
		}
		host.Spec.Maintenance = false
		host.Metadata.Generation++
		return nil
	})
	if err != nil {
		s.log.Error("cannot take a host out of maintenance after a failed evacuation", "host", h.Metadata.Name, "err", err)
	}
}
