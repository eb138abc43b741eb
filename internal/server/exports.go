package server

import (
	"fmt"
	"io"
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/vms/{name}/export: write a VM that is off as an OVF package
// (streamOptimized VMDKs, SHA-256 manifest) into a staging folder, to be
// downloaded from /api/v1/exports/{id}.
func (s *Server) exportVM(w http.ResponseWriter, r *http.Request) error {
	var req api.ExportRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	t, err := s.transfer.Export(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// GET /api/v1/exports/{id}/files?name=N streams one file of an export.
func (s *Server) downloadExportFile(w http.ResponseWriter, r *http.Request) error {
	body, size, err := s.transfer.ExportFile(r.Context(), r.PathValue("id"), r.URL.Query().Get("name"))
	if err != nil {
		return err
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(int64(size)))
	_, _ = io.CopyBuffer(w, body, make([]byte, 1<<20))
	return nil
}

// GET /api/v1/exports/{id}/ova streams the export as one OVA: a tar of the
// descriptor, the manifest and the disks, in that order, made on the fly.
func (s *Server) downloadExportOVA(w http.ResponseWriter, r *http.Request) error {
	ova, err := s.transfer.ExportOVA(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", fmt.Sprint(ova.Size()))
	ova.Send(r.Context(), w)
	return nil
}
