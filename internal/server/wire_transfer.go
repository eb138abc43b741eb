package server

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/control/transfer"
)

// newTransfer builds images, imports and exports on the server's state,
// hosts and placer, with the VM lifecycle, and storage's disk naming
// adapted from the server.
func (s *Server) newTransfer() *transfer.Service {
	return transfer.New(transfer.Deps{State: s.st, Inv: s.inv, Hosts: s.agents, Places: s.places, Tasks: s.submitter,
		VMs: s.vms, Disks: transferDisks{s}, Log: s.log})
}

// registerTransferTasks registers image.import, vm.import and vm.export.
func (s *Server) registerTransferTasks(r *tasks.Runner) { s.transfer.Register(r) }

// transferDisks is the disk naming of storage for disk imports (disks.go).
type transferDisks struct{ s *Server }

func (a transferDisks) NextDiskName(vm *api.VM) string { return a.s.storage.NextDiskName(vm) }

func (transferDisks) ClaimDiskName(t *api.Task, vm *api.VM, name string) {
	storage.ClaimDiskName(t, vm, name)
}
