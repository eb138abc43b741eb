package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/vms/{name}/nics
func (s *Server) addNIC(w http.ResponseWriter, r *http.Request) error {
	var req api.NICAddRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.vms.AddNIC(r.Context(), vm, req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// PATCH /api/v1/vms/{name}/nics/{nic}
func (s *Server) updateNIC(w http.ResponseWriter, r *http.Request) error {
	var req api.NICUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.vms.UpdateNIC(r.Context(), vm, r.PathValue("nic"), req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// DELETE /api/v1/vms/{name}/nics/{nic}
func (s *Server) removeNIC(w http.ResponseWriter, r *http.Request) error {
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.vms.RemoveNIC(r.Context(), vm, r.PathValue("nic"))
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
