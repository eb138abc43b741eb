// Package transfer moves VMs and images in and out of vdc: images (their
// records, files uploaded to a host that reaches the image's datastore,
// and imports a host fetches from a URL or a datastore: image.import),
// OVF/OVA and disk imports (staging uploads, planning a package against
// the inventory, and the vm.import task that converts its disks and makes
// its VMs, undoing all of it when anything fails or the task is canceled)
// and exports (the vm.export task that writes a VM that is off as an OVF
// package, and the downloads of its files or of one OVA).
//
// transfer may call state, tasks, hosts, placement and inventory. What it
// needs of the VM lifecycle (building, defining and powering on the VMs an
// import makes) and of storage (naming and claiming a disk an import adds
// to a VM) it declares as the VMs and Disks interfaces, which the server
// fills in; it imports no other domain package.
package transfer

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

// VMs is what imports need of the VM lifecycle.
type VMs interface {
	// Build resolves a create request against the inventory: the VM
	// (without a host yet), its cluster and the host asked for ("" for
	// any).
	Build(req *api.VMCreateRequest) (*api.VM, *api.Cluster, string, error)
	// ValidateCreate checks a create request's shape.
	ValidateCreate(req *api.VMCreateRequest) error
	// Define gives host h the VM's definition and marks the VM ready.
	Define(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host) error
	// PowerOn powers a VM on, within task t.
	PowerOn(ctx context.Context, t *tasks.Run, vmID string) (any, error)
}

// Disks is what a disk import into a VM needs of storage.
type Disks interface {
	// NextDiskName picks a disk name the VM never had and no unfinished
	// task claimed.
	NextDiskName(vm *api.VM) string
	// ClaimDiskName claims a disk name of vm with task t.
	ClaimDiskName(t *api.Task, vm *api.VM, name string)
}

// Deps is what a Service is built from.
type Deps struct {
	State  *state.State
	Inv    *inventory.Inventory
	Hosts  hosts.Client
	Places *placement.Placer
	Tasks  *tasks.Submitter
	VMs    VMs
	Disks  Disks
	Log    *slog.Logger
}

// Service is images, imports and exports.
type Service struct {
	st     *state.State
	inv    *inventory.Inventory
	hosts  hosts.Client
	places *placement.Placer
	tasks  *tasks.Submitter
	vms    VMs
	disks  Disks
	log    *slog.Logger
}

// New returns the service over d.
func New(d Deps) *Service {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	return &Service{st: d.State, inv: d.Inv, hosts: d.Hosts, places: d.Places, tasks: d.Tasks, vms: d.VMs, disks: d.Disks, log: log}
}

// Register adds the handlers of image.import, vm.import and vm.export.
func (s *Service) Register(r *tasks.Runner) {
	r.Register(api.OpImageImport, tasks.Handler{Run: s.runImageImport, Resumable: true})
	r.Register(api.OpVMImport, tasks.Handler{Run: s.runVMImport, Resumable: true, Cancelable: true,
		CanceledQueued: func(ctx context.Context, t *tasks.Run) {
			var p importParams
			if t.Params(&p) == nil {
				s.dropStaging(ctx, p.Staging, p.Datastore)
			}
		}})
	r.Register(api.OpVMExport, tasks.Handler{Run: s.runVMExport, Resumable: true, Cancelable: true})
}
