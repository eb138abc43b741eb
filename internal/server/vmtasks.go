package server

import (
	"github.com/vdc-project/vdc/internal/control/tasks"
)

func (s *Server) registerTaskHandlers(r *tasks.Runner) {
	s.vms.Register(r)
	s.registerTransferTasks(r)
	s.migration.Register(r)
	s.maintenance.Register(r)
	s.ha.Register(r)
	s.registerStorageTasks(r)
}
