package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/uploads
func (s *Server) createUpload(w http.ResponseWriter, r *http.Request) error {
	var req api.UploadRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	up, err := s.transfer.CreateUpload(r.Context(), req)
	if err != nil {
		return err
	}
	reply(w, http.StatusCreated, up)
	return nil
}

// PUT /api/v1/uploads/{id}/files?name=N: the body is the file. It goes
// straight to a host that reaches the upload's datastore, which checks it
// as it comes (an OVA's tar entries, sizes, digests).
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) error {
	f, err := s.transfer.UploadFile(r.Context(), r.PathValue("id"), r.URL.Query().Get("name"), r.Body, r.ContentLength)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, f)
	return nil
}

// DELETE /api/v1/uploads/{id} and /api/v1/exports/{id}
func (s *Server) deleteStaging(w http.ResponseWriter, r *http.Request) error {
	if err := s.transfer.DeleteStaging(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// POST /api/v1/imports: a dry run answers with the plan; an import starts a
// vm.import task. A package that is already uploaded is checked here, so
// that a bad one is refused at once, and nothing is made.
func (s *Server) createImport(w http.ResponseWriter, r *http.Request) error {
	var req api.ImportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, plan, err := s.transfer.Import(r.Context(), req)
	if err != nil {
		return err
	}
	if plan != nil {
		reply(w, http.StatusOK, plan)
		return nil
	}
	replyTask(w, t)
	return nil
}
