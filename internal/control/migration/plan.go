package migration

import (
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
)

// ValidateRequest checks the shape of a migration request: its options in
// range and somewhere to go.
func ValidateRequest(o api.MigrateRequest) error {
	switch {
	case o.Compress != "" && o.Compress != "zstd" && o.Compress != "xbzrle":
		return api.Errorf(api.ErrInvalid, "compress must be zstd or xbzrle, got %q", o.Compress)
	case o.Multifd < 0 || o.Multifd > 16:
		return api.Errorf(api.ErrInvalid, "multifd must be between 0 and 16 connections, got %d", o.Multifd)
	case o.MaxDowntimeMs < 0 || o.MaxDowntimeMs > 60000:
		return api.Errorf(api.ErrInvalid, "maxDowntimeMs must be between 0 (default 300) and 60000, got %d", o.MaxDowntimeMs)
	case o.MaxBandwidth < 0:
		return api.Errorf(api.ErrInvalid, "maxBandwidth must not be negative")
	case o.MaxBandwidth > 0 && o.MaxBandwidth < 1<<20:
		return api.Errorf(api.ErrInvalid, "maxBandwidth %s/s is too low to move a VM; give at least 1 MiB/s", o.MaxBandwidth)
	case o.Host == "" && o.Datastore == "":
		return api.Errorf(api.ErrInvalid, "say where to: a host, a datastore, or both")
	}
	return nil
}

// plan resolves a request and checks that the move can work, so that a
// refused move changes nothing.
func (s *Service) plan(vm *api.VM, src *api.Host, req api.MigrateRequest) (params, error) {
	p := params{Host: src.Metadata.ID, Disks: req.Disks, Options: req}
	dst := src
	if req.Host != "" {
		o, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return p, err
		}
		dst = o.(*api.Host)
		p.Host = dst.Metadata.ID
	}
	var ds *api.Datastore
	if req.Datastore != "" {
		o, err := s.inv.Lookup(api.KindDatastore, req.Datastore)
		if err != nil {
			return p, err
		}
		ds = o.(*api.Datastore)
		p.Datastore = ds.Metadata.ID
	}
	for _, d := range req.Disks {
		if !slices.ContainsFunc(vm.Spec.Disks, func(x api.VMDisk) bool { return x.Name == d }) {
			return p, api.Errorf(api.ErrInvalid, "vm %s has no disk %q", vm.Metadata.Name, d)
		}
	}
	if len(req.Disks) > 0 && ds == nil {
		return p, api.Errorf(api.ErrInvalid, "choosing disks needs a datastore to move them to")
	}
	moved := movedDisks(vm, p)
	if len(moved) > 0 && len(vm.Spec.Snapshots) > 0 {
		return p, api.Errorf(api.ErrConflict, "vm %s has snapshots: moving its disks would flatten them; delete the snapshots first", vm.Metadata.Name)
	}
	if len(moved) > 0 && vm.Spec.Template {
		return p, api.Errorf(api.ErrConflict, "vm %s is a template: clone it to another datastore instead", vm.Metadata.Name)
	}
	if dst.Metadata.ID == src.Metadata.ID && len(moved) == 0 {
		return p, api.Errorf(api.ErrConflict, "vm %s is already there", vm.Metadata.Name)
	}
	return p, s.check(vm, src, dst, p, moved)
}

// movedDisks lists the disks a migration puts on another datastore.
func movedDisks(vm *api.VM, p params) []string {
	if p.Datastore == "" {
		return nil
	}
	var out []string
	for _, d := range vm.Spec.Disks {
		if d.Datastore.ID != p.Datastore && (len(p.Disks) == 0 || slices.Contains(p.Disks, d.Name)) {
			out = append(out, d.Name)
		}
	}
	return out
}

// check says why a VM cannot move to a host, before anything moves.
func (s *Service) check(vm *api.VM, src, dst *api.Host, p params, moved []string) error {
	if err := s.checkHost(vm, src, dst); err != nil {
		return err
	}
	if p.Datastore != "" {
		if err := s.checkDatastore(vm, dst, p.Datastore, moved); err != nil {
			return err
		}
	}
	return s.checkReach(vm, dst, moved)
}

// checkHost says why vm, on src, cannot move to host dst.
func (s *Service) checkHost(vm *api.VM, src, dst *api.Host) error {
	live := vm.Status.PowerState == api.PowerOn
	if vm.Status.PowerState == api.PowerSuspended {
		return api.Errorf(api.ErrConflict, "vm %s is suspended: resume it (to move it live) or power it off first", vm.Metadata.Name)
	}
	if vm.Status.PowerState != api.PowerOn && vm.Status.PowerState != api.PowerOff {
		return api.Errorf(api.ErrConflict, "vm %s is %s", vm.Metadata.Name, vm.Status.PowerState)
	}
	if dst.Status.Connection != api.HostConnected {
		return api.Errorf(api.ErrConflict, "host %s is disconnected", dst.Metadata.Name)
	}
	if err := inventory.FirstErr(s.inv.NotHotAdding(vm), s.inv.NotChangingNICs(vm)); err != nil {
		return err
	}
	if dst.Spec.Maintenance && dst.Metadata.ID != src.Metadata.ID {
		return api.Errorf(api.ErrConflict, "host %s is in maintenance", dst.Metadata.Name)
	}
	vcl, ok := state.Get[*api.Cluster](s.st, vm.Spec.Cluster.ID)
	dcl, ok2 := state.Get[*api.Cluster](s.st, dst.Spec.Cluster.ID)
	if !ok || !ok2 || inventory.DatacenterOf(vcl) != inventory.DatacenterOf(dcl) {
		return api.Errorf(api.ErrConflict, "host %s is in another datacenter: the VM's port groups and datastores are not there", dst.Metadata.Name)
	}
	if err := s.inv.CanCarryNICs(vm, dst); err != nil {
		return err
	}
	if dst.Status.Driver != src.Status.Driver {
		return api.Errorf(api.ErrConflict, "host %s runs the %s driver, the VM's host %s", dst.Metadata.Name, dst.Status.Driver, src.Status.Driver)
	}
	if live && dst.Metadata.ID != src.Metadata.ID {
		if dst.Status.Hypervisor != src.Status.Hypervisor || dst.Status.Accel != src.Status.Accel {
			return api.Errorf(api.ErrConflict, "host %s runs %s (%s), the VM's host %s (%s): a running VM moves only between the same",
				dst.Metadata.Name, dst.Status.Hypervisor, dst.Status.Accel, src.Status.Hypervisor, src.Status.Accel)
		}
		if _, err := s.places.Admit(vm, dcl, dst, false); err != nil {
			return err
		}
	}
	return nil
}

// checkDatastore says why vm's moved disks cannot go to datastore dsID
// through host dst.
func (s *Service) checkDatastore(vm *api.VM, dst *api.Host, dsID string, moved []string) error {
	vcl, _ := state.Get[*api.Cluster](s.st, vm.Spec.Cluster.ID)
	if ds, ok := state.Get[*api.Datastore](s.st, dsID); !ok || vcl == nil || inventory.DatacenterOf(ds) != inventory.DatacenterOf(vcl) {
		return api.Errorf(api.ErrConflict, "datastore %s is not in the VM's datacenter", s.dsName(dsID))
	}
	if !reaches(dst, dsID) {
		return api.Errorf(api.ErrConflict, "host %s does not reach datastore %s", dst.Metadata.Name, s.dsName(dsID))
	}
	return s.checkRoomFor(vm, dsID, moved)
}

// checkReach says which of the VM's files host dst would not reach: a disk
// that stays where it is, a powered-off VM's disk it copies, the image
// the VM boots from.
func (s *Service) checkReach(vm *api.VM, dst *api.Host, moved []string) error {
	live := vm.Status.PowerState == api.PowerOn
	for _, d := range vm.Spec.Disks {
		if slices.Contains(moved, d.Name) {
			if !live && !reaches(dst, d.Datastore.ID) {
				return api.Errorf(api.ErrConflict, "a powered-off VM's disk is copied by the target host, but host %s does not reach datastore %s of %s: start the VM to move it live",
					dst.Metadata.Name, s.dsName(d.Datastore.ID), d.Name)
			}
			continue
		}
		if !reaches(dst, d.Datastore.ID) {
			return api.Errorf(api.ErrConflict, "host %s does not reach datastore %s of disk %s: give a datastore to copy it to", dst.Metadata.Name, s.dsName(d.Datastore.ID), d.Name)
		}
	}
	if vm.Spec.Boot != nil {
		if img, ok := state.Get[*api.Image](s.st, vm.Spec.Image.ID); ok && !reaches(dst, img.Spec.Datastore.ID) {
			return api.Errorf(api.ErrConflict, "host %s does not reach datastore %s of image %s the VM boots from", dst.Metadata.Name,
				s.dsName(img.Spec.Datastore.ID), img.Metadata.Name)
		}
	}
	return nil
}

// reaches says whether host h reports it reaches datastore dsID.
func reaches(h *api.Host, dsID string) bool {
	return slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == dsID })
}

// dsName names a datastore in a message (its ID once it is gone).
func (s *Service) dsName(id string) string {
	if ds, ok := state.Get[*api.Datastore](s.st, id); ok {
		return ds.Metadata.Name
	}
	return id
}

// checkRoomFor refuses to copy disks to a datastore without the free
// space their data takes now (a thin disk may still grow on the way).
func (s *Service) checkRoomFor(vm *api.VM, dsID string, moved []string) error {
	ds, ok := state.Get[*api.Datastore](s.st, dsID)
	if !ok {
		return nil
	}
	if ds.Status.CapacityBytes == 0 {
		return nil // not measured yet
	}
	need := heldBytes(vm, moved)
	if need > ds.Status.FreeBytes {
		return api.Errorf(api.ErrUnprocessable, "datastore %s has %s free; the disks of vm %s to copy there hold %s",
			ds.Metadata.Name, ds.Status.FreeBytes, vm.Metadata.Name, need)
	}
	return nil
}

// heldBytes is the data the named disks of vm hold now.
func heldBytes(vm *api.VM, disks []string) api.Size {
	var n api.Size
	for _, d := range vm.Status.Disks {
		if slices.Contains(disks, d.Name) {
			n += d.AllocatedBytes
		}
	}
	return n
}
