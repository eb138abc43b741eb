// Package vms is the VM lifecycle: planning a new VM from a request
// (ValidateCreate, Build, Create), defining it on its host (Define),
// powering it on and off (Power, PowerOn), changing it (PlanUpdate, with
// the hot-add of vCPUs and memory to a running VM), deleting it
// (PlanDelete), adding, changing and removing its NICs (AddNIC,
// UpdateNIC, RemoveNIC, live while it runs) and running programs in its
// guest (Exec). Register adds the handlers of its tasks: vm.create,
// vm.delete, vm.power.*, vm.hot-add and vm.nic-*.
//
// vms calls state, tasks, hosts, placement and inventory, and no other
// domain package: what it needs of HA (admission control, the HA
// priorities) and of storage (the cloud-init rules, the files snapshots
// keep, linked clones) it declares as the HA and Storage interfaces, which
// the server fills in.
package vms

import (
	"context"
	"log/slog"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// HA is what the VM lifecycle needs of high availability.
type HA interface {
	// CheckHAAdmission refuses a power-on of vm on host h that would
	// leave cluster cl unable to restart its protected VMs after the
	// host failures it must tolerate.
	CheckHAAdmission(vm *api.VM, cl *api.Cluster, h *api.Host) error
	// ValidateHAPriority checks an HA priority a request gives a VM.
	ValidateHAPriority(p string) error
}

// Storage is what the VM lifecycle needs of storage.
type Storage interface {
	// ValidateCloudInit checks the cloud-init settings of a new VM.
	ValidateCloudInit(ci *api.CloudInit) error
	// SnapshotFiles lists the files vm's snapshots keep on its host,
	// which go with the VM (the host removes its current disks itself).
	SnapshotFiles(vm *api.VM) []string
	// Dependents names the VMs linked to any file of vm (linked clones).
	Dependents(vm *api.VM) []string
}

// Deps is what a Service is built from.
type Deps struct {
	State  *state.State
	Inv    *inventory.Inventory
	Hosts  hosts.Client
	Places *placement.Placer
	Tasks  *tasks.Submitter
	HA     HA
	// Storage is not needed to create, define or power VMs; ValidateCreate
	// and deleting VMs need it.
	Storage Storage
	// Admit, when set, is asked whether the request may make vm, as
	// planned (its folder, cluster, host if named, datastores and port
	// groups resolved), before anything is reserved: the caller's
	// permissions on each.
	Admit func(ctx context.Context, vm *api.VM) error
	Log   *slog.Logger
}

// Service is the VM lifecycle.
type Service struct {
	st      *state.State
	inv     *inventory.Inventory
	hosts   hosts.Client
	places  *placement.Placer
	tasks   *tasks.Submitter
	ha      HA
	storage Storage
	admit   func(ctx context.Context, vm *api.VM) error
	log     *slog.Logger
}

// New returns the service over d.
func New(d Deps) *Service {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	return &Service{st: d.State, inv: d.Inv, hosts: d.Hosts, places: d.Places, tasks: d.Tasks, ha: d.HA, storage: d.Storage, admit: d.Admit, log: log}
}

// Register adds the handlers of the VM lifecycle's tasks to r.
func (s *Service) Register(r *tasks.Runner) {
	r.Register(api.OpVMCreate, tasks.Handler{Run: s.runCreate, Resumable: true})
	r.Register(api.OpVMDelete, tasks.Handler{Run: s.runDelete, Resumable: true})
	r.Register(api.OpVMHotAdd, tasks.Handler{Run: s.runHotAdd, Resumable: true})
	r.Register(api.OpNICAdd, tasks.Handler{Run: s.runNICAdd, Resumable: true})
	r.Register(api.OpNICRemove, tasks.Handler{Run: s.runNICRemove, Resumable: true})
	r.Register(api.OpNICUpdate, tasks.Handler{Run: s.runNICUpdate, Resumable: true})
	for action := range powerActions {
		h := tasks.Handler{Run: s.runPower, Resumable: true}
		if action == api.ActionReset {
			h = tasks.Handler{Run: s.runPower, Interrupted: "the VM may or may not have been reset"}
		}
		r.Register(api.OpVMPower(action), h)
	}
}

// cluster is the cluster of vm.
func (s *Service) cluster(vm *api.VM) (*api.Cluster, error) {
	cl, ok := state.Get[*api.Cluster](s.st, vm.Spec.Cluster.ID)
	if !ok {
		return nil, api.Errorf(api.ErrConflict, "vm %s is in no cluster", vm.Metadata.Name)
	}
	return cl, nil
}
