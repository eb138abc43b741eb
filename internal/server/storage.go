package server

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// The storage service's rules that other parts of the server use, under
// the names they call (they go as those parts move to their services).

func vmStorage(vm *api.VM) *api.VMStorage { return storage.VMStorage(vm) }

func alarmLevel(capacity, free api.Size) string { return storage.AlarmLevel(capacity, free) }

func datastoreEvents(base api.Event, prev, cur *api.Datastore) []api.Event {
	return storage.DatastoreEvents(base, prev, cur)
}

func validateCloudInit(ci *api.CloudInit) error { return storage.ValidateCloudInit(ci) }

func (s *Server) snapshotFiles(vm *api.VM) []string { return s.storage.SnapshotFiles(vm) }

func (s *Server) vmDependents(vm *api.VM) []string { return s.storage.VMDependents(vm) }

func (s *Server) registerStorageTasks(r *tasks.Runner) {
	s.storage.Register(r)
}
