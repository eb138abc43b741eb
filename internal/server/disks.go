package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/vms/{name}/disks
func (s *Server) addDisk(w http.ResponseWriter, r *http.Request) {
	var req api.DiskAddRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Size < api.MinVMMemory || req.Size > api.MaxDiskSize {
		fail(w, api.Errorf(api.ErrInvalid, "disk size must be between %s and %s, got %s", api.MinVMMemory, api.MaxDiskSize, req.Size))
		return
	}
	switch req.Bus {
	case "":
		req.Bus = api.BusVirtio
	case api.BusVirtio, api.BusSCSI, api.BusSATA:
	default:
		fail(w, api.Errorf(api.ErrInvalid, "bus must be virtio, scsi or sata, got %q", req.Bus))
		return
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.AddDisk(r.Context(), vm, req)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// PATCH /api/v1/vms/{name}/disks/{disk}
func (s *Server) resizeDisk(w http.ResponseWriter, r *http.Request) {
	var req api.DiskResizeRequest
	if !decode(w, r, &req) {
		return
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.ResizeDisk(r.Context(), vm, r.PathValue("disk"), req.Size)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// DELETE /api/v1/vms/{name}/disks/{disk}
func (s *Server) removeDisk(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.RemoveDisk(r.Context(), vm, r.PathValue("disk"))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}
