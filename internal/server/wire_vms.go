package server

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/vms"
)

// newVMs builds the VM lifecycle service on the server's state, hosts and
// placer, with what it needs of HA and storage adapted from the server.
func (s *Server) newVMs() *vms.Service {
	return vms.New(vms.Deps{State: s.st, Inv: s.inv, Hosts: s.agents, Places: s.places, Tasks: s.submitter,
		HA: s.ha, Storage: vmsStorage{s}, Admit: s.admitVM, Log: s.log})
}

// vmsStorage is the storage side of the VM lifecycle (storage.go,
// snapshots.go).
type vmsStorage struct{ s *Server }

func (vmsStorage) ValidateCloudInit(ci *api.CloudInit) error { return storage.ValidateCloudInit(ci) }

func (a vmsStorage) SnapshotFiles(vm *api.VM) []string { return a.s.storage.SnapshotFiles(vm) }

func (a vmsStorage) Dependents(vm *api.VM) []string { return a.s.storage.VMDependents(vm) }
