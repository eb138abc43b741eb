package vms

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// createParams are kept in the vm.create task.
type createParams struct {
	PowerOn bool `json:"powerOn,omitempty"`
}

// Create plans a new VM from req (not from a template): it checks the
// request, resolves it against the inventory, places the VM on a host and
// queues its vm.create task, in one transaction with the VM's record.
func (s *Service) Create(ctx context.Context, req *api.VMCreateRequest) (*api.Task, error) {
	if err := s.ValidateCreate(req); err != nil {
		return nil, err
	}
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, err
	}
	if err := s.inv.VMNameFree(req.Name, nil); err != nil {
		return nil, err
	}
	vm, cl, hostID, err := s.Build(req)
	if err != nil {
		return nil, err
	}
	if s.admit != nil {
		if err := s.admit(ctx, vm); err != nil {
			return nil, err
		}
	}
	var extra []string
	for _, d := range vm.Spec.Disks {
		if d.ForeignSource {
			extra = append(extra, s.inv.DatastoreOf(d.Source))
		}
	}
	if vm.Spec.CDROM != "" {
		extra = append(extra, s.inv.DatastoreOf(vm.Spec.CDROM))
	}
	txn := s.st.Store.Txn()
	s.inv.KeepFolder(txn, vm.Spec.Folder.ID)
	release, err := s.places.PlaceNew(txn, vm, cl, hostID, req.PowerOn, extra...)
	if err != nil {
		return nil, fmt.Errorf("place vm %q in cluster %s: %w", req.Name, cl.Metadata.Name, err)
	}
	defer release()
	return s.tasks.Submit(ctx, txn, tasks.New(ctx, api.OpVMCreate, vm, createParams{PowerOn: req.PowerOn}))
}

// validateHotAddRoom checks the room a VM leaves for hot-add: none (0), or
// a ceiling at or above what it has.
func validateHotAddRoom(cpus int, mem api.Size, maxCPUs int, maxMem api.Size) error {
	switch {
	case maxCPUs < 0 || maxCPUs > api.MaxVMCPUs:
		return api.Errorf(api.ErrInvalid, "maxCpus must be between 0 (no CPU hot-add) and %d, got %d", api.MaxVMCPUs, maxCPUs)
	case maxCPUs != 0 && maxCPUs < cpus:
		return api.Errorf(api.ErrInvalid, "maxCpus (%d) is below the VM's %d vCPUs: the most it can grow to while it runs is at least what it has", maxCPUs, cpus)
	case maxMem < 0 || maxMem > api.MaxVMMemory:
		return api.Errorf(api.ErrInvalid, "maxMemory must be between 0 (no memory hot-add) and %s, got %s", api.MaxVMMemory, maxMem)
	case maxMem != 0 && maxMem < mem:
		return api.Errorf(api.ErrInvalid, "maxMemory (%s) is below the VM's %s of memory: the most it can grow to while it runs is at least what it has", maxMem, mem)
	case maxMem%(1<<20) != 0:
		return api.Errorf(api.ErrInvalid, "maxMemory must be a whole number of MiB, got %s (%d bytes)", maxMem, int64(maxMem))
	}
	return nil
}

// ValidateCreate checks a create request on its own, before the
// inventory is looked at.
func (s *Service) ValidateCreate(req *api.VMCreateRequest) error {
	if err := inventory.FirstErr(inventory.ValidateCommon("vm", req.Name, req.Labels, req.Description), inventory.ValidateVMShape(req.CPUs, req.Memory),
		validateHotAddRoom(req.CPUs, req.Memory, req.MaxCPUs, req.MaxMemory), s.ha.ValidateHAPriority(req.HAPriority), s.storage.ValidateCloudInit(req.CloudInit)); err != nil {
		return err
	}
	if err := validateDisks(req); err != nil {
		return err
	}
	for what, p := range map[string]string{"image": req.Image, "cdrom": req.CDROM} {
		if p != "" && p[0] == '/' && filepath.Clean(p) != p {
			return api.Errorf(api.ErrInvalid, "%s path %q is not clean", what, p)
		}
	}
	if req.CDROM != "" && !filepath.IsAbs(req.CDROM) {
		return api.Errorf(api.ErrInvalid, "cdrom must be the absolute path of an ISO file in a datastore, got %q", req.CDROM)
	}
	if req.Linked && req.Image == "" {
		return api.Errorf(api.ErrInvalid, "linked needs an image to link to")
	}
	return validateNICs(req.NICs)
}

func validateDisks(req *api.VMCreateRequest) error {
	if len(req.Disks) > api.MaxDisksPerVM {
		return api.Errorf(api.ErrInvalid, "at most %d disks, got %d", api.MaxDisksPerVM, len(req.Disks))
	}
	for i, d := range req.Disks {
		if i == 0 && d.Size == 0 && req.Image != "" {
			continue // the image's size
		}
		if d.Size < api.MinVMMemory || d.Size > api.MaxDiskSize {
			return api.Errorf(api.ErrInvalid, "disk %d: size must be between %s and %s, got %s", i, api.MinVMMemory, api.MaxDiskSize, d.Size)
		}
		switch d.Bus {
		case "", api.BusVirtio, api.BusSCSI, api.BusSATA:
		default:
			return api.Errorf(api.ErrInvalid, "disk %d: bus must be virtio, scsi or sata, got %q", i, d.Bus)
		}
	}
	return nil
}

func validateNICs(nics []api.NICRequest) error {
	if len(nics) > api.MaxNICsPerVM {
		return api.Errorf(api.ErrInvalid, "at most %d NICs, got %d", api.MaxNICsPerVM, len(nics))
	}
	for i, n := range nics {
		if err := validateNIC(n); err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
	}
	return nil
}

// validateNIC checks one NIC a request asks for, on its own.
func validateNIC(n api.NICRequest) error {
	if n.PortGroup == "" {
		return api.Errorf(api.ErrInvalid, "no port group given")
	}
	if n.MAC != "" {
		if err := validateMAC(n.MAC); err != nil {
			return err
		}
	}
	switch n.Model {
	case "", api.NICVirtio, api.NICE1000, api.NICRTL8139:
	default:
		return api.Errorf(api.ErrInvalid, "model must be virtio, e1000 or rtl8139, got %q", n.Model)
	}
	return nil
}

func validateMAC(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return api.Errorf(api.ErrInvalid, "MAC address %q is not of the form 52:54:00:12:34:56", mac)
	}
	if hw[0]&1 == 1 {
		return api.Errorf(api.ErrInvalid, "MAC address %q is a multicast address", mac)
	}
	return nil
}
