package server

import (
	"fmt"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/storage"
)

// POST /api/v1/vms/{name}/snapshots
func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) error {
	var req api.SnapshotCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := inventory.FirstErr(api.ValidateName("snapshot", req.Name), inventory.ValidateDescription(req.Description)); err != nil {
		return err
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.CreateSnapshot(r.Context(), vm, req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// POST /api/v1/vms/{name}/snapshots/{snapshot}/revert
func (s *Server) revertSnapshot(w http.ResponseWriter, r *http.Request) error {
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.RevertSnapshot(r.Context(), vm, r.PathValue("snapshot"))
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// DELETE /api/v1/vms/{name}/snapshots/{snapshot}
func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) error {
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.DeleteSnapshot(r.Context(), vm, r.PathValue("snapshot"))
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// GET /api/v1/vms/{name}/snapshots
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) error {
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	snaps, _, err := storage.VisibleTree(vm)
	if err != nil {
		return fmt.Errorf("list the snapshots of vm %s: %w", vm.Metadata.Name, err)
	}
	reply(w, http.StatusOK, api.List[api.VMSnapshot]{Items: nonNil(snaps), Revision: vm.Metadata.Revision})
	return nil
}
