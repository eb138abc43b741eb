package server

import (
	"context"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/control/transfer"
)

// newTransfer builds images, imports and exports on the server's state,
// hosts and placer, with what they need of the VM lifecycle and of
// storage adapted from the server.
func (s *Server) newTransfer() *transfer.Service {
	return transfer.New(transfer.Deps{State: s.st, Inv: s.inv, Hosts: s.agents, Places: s.places, Tasks: s.submitter,
		VMs: transferVMs{s}, Disks: transferDisks{s}, Log: s.log})
}

// registerTransferTasks registers image.import, vm.import and vm.export.
func (s *Server) registerTransferTasks(r *tasks.Runner) { s.transfer.Register(r) }

// transferVMs is the VM lifecycle for imports (vms.go, vmtasks.go).
type transferVMs struct{ s *Server }

func (a transferVMs) Build(req *api.VMCreateRequest) (*api.VM, *api.Cluster, string, error) {
	return a.s.buildVM(req)
}

func (transferVMs) ValidateCreate(req *api.VMCreateRequest) error { return validateCreate(req) }

func (a transferVMs) Define(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host) error {
	return a.s.defineVM(ctx, t, vm, h)
}

func (a transferVMs) PowerOn(ctx context.Context, t *tasks.Run, vmID string) (any, error) {
	return a.s.powerOn(ctx, t, vmID)
}

// transferDisks is the disk naming of storage for disk imports (disks.go).
type transferDisks struct{ s *Server }

func (a transferDisks) NextDiskName(vm *api.VM) string { return a.s.nextDiskName(vm) }

func (transferDisks) ClaimDiskName(t *api.Task, vm *api.VM, name string) { claimDiskName(t, vm, name) }
