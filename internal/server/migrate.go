package server

import (
	"fmt"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/migration"
)

// POST /api/v1/vms/{name}/migrate
func (s *Server) migrateVM(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	if !decode(w, r, &req) {
		return
	}
	if err := migration.ValidateRequest(req); err != nil {
		fail(w, err)
		return
	}
	vm, src, err := s.pathVM(r)
	if err != nil {
		fail(w, fmt.Errorf("migrate: %w", err))
		return
	}
	t, err := s.migration.Migrate(r.Context(), vm, src, req)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}
