package server

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// alarmLevel is storage's rule for the heartbeat handler (hosts.go).
func alarmLevel(capacity, free api.Size) string { return storage.AlarmLevel(capacity, free) }

func (s *Server) registerStorageTasks(r *tasks.Runner) {
	s.storage.Register(r)
}
