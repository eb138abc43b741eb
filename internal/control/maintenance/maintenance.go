// Package maintenance is maintenance mode: a host entering it takes no new
// VMs at once, and a host.maintenance.enter task moves its VMs away in
// waves, running ones live and powered-off ones by registration, each as
// a child migration task. If some cannot move, or the task is canceled,
// the host leaves maintenance again.
//
// maintenance depends on state, tasks, placement (the cluster's hosts as
// the scheduler sees them), inventory and the scheduler; it queues
// migrations through its Migrations interface (the migration domain,
// wired by the server) and calls no other domain package.
package maintenance

import (
	"context"
	"log/slog"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// maxEvacuations is how many VMs leave a host at once in maintenance.
const maxEvacuations = 4

// Migrations is what maintenance needs of the migration domain.
type Migrations interface {
	// Migrate queues the migration of vm to host hostID as a child task
	// of t (owned by t's owner) and returns it.
	Migrate(ctx context.Context, t *tasks.Run, vm *api.VM, hostID string) (*api.Task, error)
}

// Deps is what the maintenance service works with.
type Deps struct {
	State      *state.State
	Inv        *inventory.Inventory
	Places     *placement.Placer
	Migrations Migrations
	Log        *slog.Logger
}

// Service is maintenance mode.
type Service struct {
	d Deps
}

// New returns the maintenance service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d}
}

// Register registers the evacuation's task handler.
func (s *Service) Register(r *tasks.Runner) {
	r.Register(api.OpHostMaintenanceEnter, tasks.Handler{Run: s.runHostEvacuate, Resumable: true, Cancelable: true})
}

// Change puts host h (a copy about to be written) in maintenance or takes
// it out. Entering is refused when some of its VMs could go nowhere;
// evacuate says whether a task must move VMs away.
func (s *Service) Change(h *api.Host, enter bool) (evacuate bool, err error) {
	if enter == h.Spec.Maintenance {
		state := "in"
		if !h.Spec.Maintenance {
			state = "not in"
		}
		return false, api.Errorf(api.ErrConflict, "host %q is already %s maintenance", h.Metadata.Name, state)
	}
	if enter {
		if _, _, err := s.Plan(h); err != nil {
			return false, err
		}
		evacuate = len(s.d.Inv.Tally.VMsOn(h.Metadata.ID)) > 0
	}
	h.Spec.Maintenance = enter
	return evacuate, nil
}
