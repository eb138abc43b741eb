package server

import (
	"fmt"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/storage"
)

// POST /api/v1/vms/{name}/snapshots
func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotCreateRequest
	if !decode(w, r, &req) {
		return
	}
	if err := inventory.FirstErr(api.ValidateName("snapshot", req.Name), inventory.ValidateDescription(req.Description)); err != nil {
		fail(w, err)
		return
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.CreateSnapshot(r.Context(), vm, req)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// POST /api/v1/vms/{name}/snapshots/{snapshot}/revert
func (s *Server) revertSnapshot(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.RevertSnapshot(r.Context(), vm, r.PathValue("snapshot"))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// DELETE /api/v1/vms/{name}/snapshots/{snapshot}
func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.DeleteSnapshot(r.Context(), vm, r.PathValue("snapshot"))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// GET /api/v1/vms/{name}/snapshots
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	snaps, _, err := storage.VisibleTree(vm)
	if err != nil {
		fail(w, fmt.Errorf("list the snapshots of vm %s: %w", vm.Metadata.Name, err))
		return
	}
	reply(w, http.StatusOK, api.List[api.VMSnapshot]{Items: nonNil(snaps), Revision: vm.Metadata.Revision})
}
