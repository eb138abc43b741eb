package migration

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// Deps is what the migration service is built from.
type Deps struct {
	State     *state.State
	Inventory *inventory.Inventory
	Hosts     hosts.Client
	Placer    *placement.Placer
	Tasks     *tasks.Submitter
	Log       *slog.Logger
	// StallTimeout fails a migration that moved no data for this long
	// (and is how long it waits for a source agent that restarts).
	StallTimeout time.Duration
}

// Service plans VM migrations and runs their tasks.
type Service struct {
	st     *state.State
	inv    *inventory.Inventory
	hosts  hosts.Client
	places *placement.Placer
	sub    *tasks.Submitter
	log    *slog.Logger
	stall  time.Duration
}

// New builds the service.
func New(d Deps) *Service {
	if d.StallTimeout <= 0 {
		d.StallTimeout = 30 * time.Second
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{st: d.State, inv: d.Inventory, hosts: d.Hosts, places: d.Placer, sub: d.Tasks, log: d.Log, stall: d.StallTimeout}
}

// Register registers the vm.migrate task handler: resumable (a new leader
// finishes it by what the hosts say) and cancelable (a cancel undoes it).
func (s *Service) Register(r *tasks.Runner) {
	r.Register(api.OpVMMigrate, tasks.Handler{Run: s.run, Resumable: true, Cancelable: true})
}

// params are kept in the vm.migrate task.
type params struct {
	Host      string             `json:"host"`                // target host ID
	Datastore string             `json:"datastore,omitempty"` // target datastore ID, "" to keep
	Disks     []string           `json:"disks,omitempty"`     // disks to move (all when empty)
	Options   api.MigrateRequest `json:"options"`
}

// Migrate plans the move of vm (on host src) that req asks for and queues
// its task; a move that cannot work is refused, and changes nothing.
func (s *Service) Migrate(ctx context.Context, vm *api.VM, src *api.Host, req api.MigrateRequest) (*api.Task, error) {
	if err := inventory.CheckReady(vm); err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	p, err := s.plan(vm, src, req)
	if err != nil {
		return nil, fmt.Errorf("migrate vm %s: %w", vm.Metadata.Name, err)
	}
	return s.sub.Submit(ctx, s.st.Store.Txn(), tasks.New(ctx, api.OpVMMigrate, vm, p))
}

// Child asks for a VM's migration to another host as a task under a
// parent task (an evacuation's).
type Child struct {
	VM     *api.VM
	HostID string    // the target host
	Parent *api.Task // the task it runs under; the child gets its owner
}

// QueueChild queues the migration of c.VM to host c.HostID as a task of
// its own under c.Parent. It plans nothing: the task checks the move when
// it starts.
func (s *Service) QueueChild(ctx context.Context, c Child) (*api.Task, error) {
	child := tasks.New(ctx, api.OpVMMigrate, c.VM, params{Host: c.HostID})
	child.Owner, child.Parent = c.Parent.Owner, c.Parent.Metadata.ID
	return s.sub.Submit(ctx, s.st.Store.Txn(), child)
}

// OrphanCopies picks, of the copies host h is receiving, the ones no
// migration task waits for: their task ended while it could not reach the
// host to throw them away. The host drops them.
func (s *Service) OrphanCopies(h *api.Host, incoming []string) []string {
	if len(incoming) == 0 {
		return nil
	}
	waited := map[string]bool{}
	state.Each(s.st, func(t *api.Task) {
		if t.Op == api.OpVMMigrate && !api.TaskDone(t.State) {
			waited[t.Target.ID] = true
		}
	})
	var drop []string
	for _, id := range incoming {
		if !waited[id] {
			s.log.Warn("host keeps the copy of a migration that ended; dropping it", "host", h.Metadata.Name, "vm", id)
			drop = append(drop, id)
		}
	}
	return drop
}
