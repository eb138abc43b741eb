package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/vms/{name}/disks
func (s *Server) addDisk(w http.ResponseWriter, r *http.Request) error {
	var req api.DiskAddRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Size < api.MinVMMemory || req.Size > api.MaxDiskSize {
		return api.Errorf(api.ErrInvalid, "disk size must be between %s and %s, got %s", api.MinVMMemory, api.MaxDiskSize, req.Size)
	}
	switch req.Bus {
	case "":
		req.Bus = api.BusVirtio
	case api.BusVirtio, api.BusSCSI, api.BusSATA:
	default:
		return api.Errorf(api.ErrInvalid, "bus must be virtio, scsi or sata, got %q", req.Bus)
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.AddDisk(r.Context(), vm, req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// PATCH /api/v1/vms/{name}/disks/{disk}
func (s *Server) resizeDisk(w http.ResponseWriter, r *http.Request) error {
	var req api.DiskResizeRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.ResizeDisk(r.Context(), vm, r.PathValue("disk"), req.Size)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// DELETE /api/v1/vms/{name}/disks/{disk}
func (s *Server) removeDisk(w http.ResponseWriter, r *http.Request) error {
	vm, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.RemoveDisk(r.Context(), vm, r.PathValue("disk"))
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
