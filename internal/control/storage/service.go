package storage

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// Deps are what a Service works with.
type Deps struct {
	State  *state.State
	Inv    *inventory.Inventory
	Hosts  hosts.Client
	Places *placement.Placer
	Tasks  *tasks.Submitter
	Log    *slog.Logger
	// HostWait is how long a snapshot delete waits for a host that does
	// not answer (default 5 minutes), trying again every RetryEvery
	// (default 2s).
	HostWait   time.Duration
	RetryEvery time.Duration
}

// Service plans and runs the storage changes of VMs.
type Service struct {
	st     *state.State
	inv    *inventory.Inventory
	hosts  hosts.Client
	places *placement.Placer
	tasks  *tasks.Submitter
	log    *slog.Logger

	hostWait, retryEvery time.Duration
}

// New makes a Service.
func New(d Deps) *Service {
	s := &Service{st: d.State, inv: d.Inv, hosts: d.Hosts, places: d.Places, tasks: d.Tasks, log: d.Log,
		hostWait: d.HostWait, retryEvery: d.RetryEvery}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.hostWait <= 0 {
		s.hostWait = 5 * time.Minute
	}
	if s.retryEvery <= 0 {
		s.retryEvery = 2 * time.Second
	}
	return s
}

// Register registers the handlers of the storage tasks.
func (s *Service) Register(r *tasks.Runner) {
	r.Register(api.OpSnapshotCreate, tasks.Handler{Run: s.runSnapshotCreate, Resumable: true})
	r.Register(api.OpSnapshotRevert, tasks.Handler{Run: s.runSnapshotRevert, Resumable: true})
	r.Register(api.OpSnapshotDelete, tasks.Handler{Run: s.runSnapshotDelete, Resumable: true})
	r.Register(api.OpVMClone, tasks.Handler{Run: s.runClone, Resumable: true})
	r.Register(api.OpDiskAdd, tasks.Handler{Run: s.runDiskAdd, Resumable: true})
	r.Register(api.OpDiskResize, tasks.Handler{Run: s.runDiskResize, Resumable: true})
	r.Register(api.OpDiskRemove, tasks.Handler{Run: s.runDiskRemove, Resumable: true})
}

// submit queues a task that needs nothing else to hold.
func (s *Service) submit(ctx context.Context, t *api.Task) (*api.Task, error) {
	return s.tasks.Submit(ctx, s.st.Store.Txn(), t)
}

// ready checks what every storage change of a VM needs: a VM that exists
// for good, on a host that answers, and no migration under way.
func (s *Service) ready(vm *api.VM) (*api.Host, error) {
	if err := inventory.CheckReady(vm); err != nil {
		return nil, err
	}
	if vm.Status.PowerState == api.PowerUnknown {
		return nil, api.Errorf(api.ErrConflict, "the state of vm %s is unknown: %s", vm.Metadata.Name, vm.Status.Message)
	}
	return s.inv.VMHost(vm)
}

// checkFree refuses work that needs more space than a datastore has.
func (s *Service) checkFree(dsID string, need api.Size, what string) error {
	ds, ok := state.Get[*api.Datastore](s.st, dsID)
	if !ok {
		return nil
	}
	if ds.Status.CapacityBytes == 0 {
		return nil // not measured yet: the host checks
	}
	if margin := api.Size(64 << 20); need+margin > ds.Status.FreeBytes {
		return api.Errorf(api.ErrUnprocessable, "datastore %s has %s free; %s needs %s", ds.Metadata.Name, ds.Status.FreeBytes, what, need+margin)
	}
	return nil
}

// abs resolves a path on a datastore.
func (s *Service) abs(dsID, rel string) (string, error) {
	ds, ok := state.Get[*api.Datastore](s.st, dsID)
	if !ok {
		return "", api.Errorf(api.ErrConflict, "datastore %s is gone", dsID)
	}
	return filepath.Join(ds.Spec.Path, rel), nil
}

// absFunc is abs for a disk, "" when its datastore is gone.
func (s *Service) absFunc() func(d api.VMDisk) string {
	return func(d api.VMDisk) string {
		f, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return ""
		}
		return f
	}
}

// dependents lists the other VMs whose disks are linked to a file.
func (s *Service) dependents(self, abs string) []string {
	var names []string
	state.Each(s.st, func(v *api.VM) {
		if v.Metadata.ID == self {
			return
		}
		for _, d := range inventory.VMFiles(v) {
			if d.Linked && d.Source == abs {
				names = append(names, v.Metadata.Name)
				return
			}
		}
	})
	slices.Sort(names)
	return names
}

// dependentsOf lists the VMs linked to any of a VM's disks.
func (s *Service) dependentsOf(vm *api.VM, disks []api.VMDisk) []string {
	var out []string
	for _, d := range disks {
		if f, err := s.abs(d.Datastore.ID, d.Path); err == nil {
			out = append(out, s.dependents(vm.Metadata.ID, f)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// VMDependents lists the VMs linked to any file of a VM (its disks' and
// its snapshots'): a VM they depend on cannot go.
func (s *Service) VMDependents(vm *api.VM) []string {
	return s.dependentsOf(vm, inventory.VMFiles(vm))
}
