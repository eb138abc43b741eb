package server

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

func (s *Server) registerTaskHandlers(r *tasks.Runner) {
	s.vms.Register(r)
	s.registerTransferTasks(r)
	s.migration.Register(r)
	r.Register(api.OpHostMaintenanceEnter, tasks.Handler{Run: s.runHostEvacuate, Resumable: true, Cancelable: true})
	r.Register(api.OpHostFailover, tasks.Handler{Run: s.runHostFailover, Resumable: true})
	r.Register(api.OpVMHARestart, tasks.Handler{Run: s.runVMHARestart, Resumable: true})
	r.Register(api.OpVMHAReset, tasks.Handler{Run: s.runVMHAReset, Interrupted: "the VM may or may not have been reset"})
	s.registerStorageTasks(r)
}
