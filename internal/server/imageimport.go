package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/images/import: the image record, in phase uploading, and
// a task that has a host fetch the file into the image's folder.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request) error {
	var req api.ImageImportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, err := s.transfer.ImportImage(r.Context(), req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
