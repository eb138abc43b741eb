package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/uploads
func (s *Server) createUpload(w http.ResponseWriter, r *http.Request) {
	var req api.UploadRequest
	if !decode(w, r, &req) {
		return
	}
	up, err := s.transfer.CreateUpload(r.Context(), req)
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, http.StatusCreated, up)
}

// PUT /api/v1/uploads/{id}/files?name=N: the body is the file. It goes
// straight to a host that reaches the upload's datastore, which checks it
// as it comes (an OVA's tar entries, sizes, digests).
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) {
	f, err := s.transfer.UploadFile(r.Context(), r.PathValue("id"), r.URL.Query().Get("name"), r.Body, r.ContentLength)
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, http.StatusOK, f)
}

// DELETE /api/v1/uploads/{id} and /api/v1/exports/{id}
func (s *Server) deleteStaging(w http.ResponseWriter, r *http.Request) {
	if err := s.transfer.DeleteStaging(r.Context(), r.PathValue("id")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// POST /api/v1/imports: a dry run answers with the plan; an import starts a
// vm.import task. A package that is already uploaded is checked here, so
// that a bad one is refused at once, and nothing is made.
func (s *Server) createImport(w http.ResponseWriter, r *http.Request) {
	var req api.ImportRequest
	if !decode(w, r, &req) {
		return
	}
	t, plan, err := s.transfer.Import(r.Context(), req)
	if err != nil {
		fail(w, err)
		return
	}
	if plan != nil {
		reply(w, http.StatusOK, plan)
		return
	}
	replyTask(w, t)
}
