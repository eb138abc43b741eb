package server

import (
	"fmt"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/migration"
)

// POST /api/v1/vms/{name}/migrate
func (s *Server) migrateVM(w http.ResponseWriter, r *http.Request) error {
	var req api.MigrateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := migration.ValidateRequest(req); err != nil {
		return err
	}
	vm, src, err := s.pathVM(r)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	t, err := s.migration.Migrate(r.Context(), vm, src, req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
