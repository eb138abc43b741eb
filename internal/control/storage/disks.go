package storage

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

type diskAddParams struct {
	Disk api.VMDisk `json:"disk"`
}

type diskResizeParams struct {
	Disk string   `json:"disk"`
	Size api.Size `json:"size"`
}

type diskRemoveParams struct {
	Disk string `json:"disk"`
}

// NextDiskName picks a disk name the VM never had (snapshots keep the
// files of disks removed since, by name) and no unfinished task claimed;
// ClaimDiskName claims it with the task.
func (s *Service) NextDiskName(vm *api.VM) string {
	names := slices.Collect(maps.Keys(s.inv.PendingClaims(inventory.VMClaim(vm.Metadata.ID, "disks", ""))))
	for _, d := range inventory.VMFiles(vm) {
		names = append(names, d.Name)
	}
	n := 0
	for _, name := range names {
		if i, err := strconv.Atoi(strings.TrimPrefix(path.Base(name), "disk")); err == nil && i >= n {
			n = i + 1
		}
	}
	return fmt.Sprintf("disk%d", n)
}

// ClaimDiskName adds the claim on a new disk's name to the task that
// adds it (submitted through inventory.SubmitOnVM).
func ClaimDiskName(t *api.Task, vm *api.VM, name string) {
	t.Claims = append(t.Claims, inventory.VMClaim(vm.Metadata.ID, "disks", name))
}

// diskReady checks what a change of a VM's disks needs; what says which
// change, for the error.
func (s *Service) diskReady(vm *api.VM, what string) error {
	if _, err := s.ready(vm); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if vm.Spec.Template {
		return api.Errorf(api.ErrConflict, "%s: vm %s is a template; clone it to change it", what, vm.Metadata.Name)
	}
	return s.inv.NotMoving(vm)
}

func findDisk(vm *api.VM, name string) (*api.VMDisk, error) {
	for i := range vm.Spec.Disks {
		if vm.Spec.Disks[i].Name == name {
			return &vm.Spec.Disks[i], nil
		}
	}
	return nil, api.Errorf(api.ErrNotFound, "vm %s has no disk %q", vm.Metadata.Name, name)
}

// AddDisk queues the add of a disk to a VM (a request whose size and bus
// were checked). The disk's name and slot are claimed with the task:
// racing adds each get their own.
func (s *Service) AddDisk(ctx context.Context, vm *api.VM, req api.DiskAddRequest) (*api.Task, error) {
	return s.inv.SubmitOnVM(ctx, vm, func(vm *api.VM) (*api.Task, error) {
		d, err := s.planDiskAdd(vm, req)
		if err != nil {
			return nil, err
		}
		t := tasks.New(ctx, api.OpDiskAdd, vm, diskAddParams{Disk: d})
		ClaimDiskName(t, vm, d.Name)
		if d.Slot != "" {
			t.Claims = append(t.Claims, inventory.SlotClaim(vm.Metadata.ID, d.Slot))
		}
		return t, nil
	})
}

func (s *Service) planDiskAdd(vm *api.VM, req api.DiskAddRequest) (api.VMDisk, error) {
	if err := s.diskReady(vm, "add a disk"); err != nil {
		return api.VMDisk{}, err
	}
	if n := len(vm.Spec.Disks) + len(s.inv.PendingClaims(inventory.VMClaim(vm.Metadata.ID, "disks", ""))); n >= api.MaxDisksPerVM {
		return api.VMDisk{}, api.Errorf(api.ErrConflict, "vm %s has %d disks (some being added), the most it may have", vm.Metadata.Name, n)
	}
	if req.Bus == api.BusSATA && vm.Status.PowerState != api.PowerOff {
		return api.VMDisk{}, api.Errorf(api.ErrConflict, "vm %s is %s: SATA disks cannot be hot-plugged; use virtio or scsi, or stop it", vm.Metadata.Name, vm.Status.PowerState)
	}
	ds, err := s.diskDatastore(vm, req)
	if err != nil {
		return api.VMDisk{}, err
	}
	name := s.NextDiskName(vm)
	d := api.VMDisk{Name: name, SizeBytes: req.Size, Datastore: api.Ref{ID: ds.Metadata.ID}, Bus: req.Bus, Thick: req.Thick,
		Path: path.Join(inventory.VMDir(vm), name+".qcow2")}
	if req.Bus == api.BusVirtio && vm.Status.PowerState != api.PowerOff {
		if d.Slot = s.inv.FreeSlot(vm); d.Slot == "" {
			return api.VMDisk{}, api.Errorf(api.ErrConflict, "vm %s has no free hot-plug slot (%d virtio disks and NICs were added while it ran, or are being added); stop it to add more", vm.Metadata.Name, inventory.HotplugSlots)
		}
	}
	return d, nil
}

// diskDatastore is where a new disk goes: the datastore the request
// names, or that of the VM's first disk; in the VM's datacenter, reached
// by its host, with room for a thick disk.
func (s *Service) diskDatastore(vm *api.VM, req api.DiskAddRequest) (*api.Datastore, error) {
	dc := ""
	if cl, ok := state.Get[*api.Cluster](s.st, vm.Spec.Cluster.ID); ok {
		dc = inventory.DatacenterOf(cl)
	}
	dsName := req.Datastore
	if dsName == "" && len(vm.Spec.Disks) > 0 {
		dsName = vm.Spec.Disks[0].Datastore.ID
	}
	dso, err := s.inv.Pick(api.KindDatastore, dsName, func(o api.Object) bool { return inventory.DatacenterOf(o) == dc })
	if err != nil {
		return nil, fmt.Errorf("add a disk to vm %s: %w", vm.Metadata.Name, err)
	}
	ds := dso.(*api.Datastore)
	h, _ := s.inv.VMHost(vm)
	if h != nil && !slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == ds.Metadata.ID }) {
		return nil, api.Errorf(api.ErrConflict, "host %s of vm %s does not reach datastore %s", h.Metadata.Name, vm.Metadata.Name, ds.Metadata.Name)
	}
	if req.Thick {
		if err := s.checkFree(ds.Metadata.ID, req.Size, "a thick disk of "+req.Size.String()); err != nil {
			return nil, fmt.Errorf("add a disk to vm %s: %w", vm.Metadata.Name, err)
		}
	}
	return ds, nil
}

func (s *Service) runDiskAdd(ctx context.Context, t *tasks.Run) (any, error) {
	var p diskAddParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if slices.ContainsFunc(vm.Spec.Disks, func(d api.VMDisk) bool { return d.Name == p.Disk.Name }) {
		return p.Disk.Name, nil // added before the server restarted
	}
	f, err := s.abs(p.Disk.Datastore.ID, p.Disk.Path)
	if err != nil {
		return nil, err
	}
	what := "making disk " + p.Disk.Name
	if vm.Status.PowerState != api.PowerOff {
		what += " and plugging it into the running VM"
	}
	t.Progress(ctx, 20, what)
	st, err := s.hosts.AddDisk(ctx, hosts.TargetOf(h), vm.Metadata.ID, hypervisor.DiskConfig{Name: p.Disk.Name, Path: f,
		SizeBytes: int64(p.Disk.SizeBytes), Bus: p.Disk.Bus, Thick: p.Disk.Thick, Slot: p.Disk.Slot})
	if err != nil {
		return nil, fmt.Errorf("add disk %s to vm %s: %w", p.Disk.Name, vm.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Spec.Disks = append(v.Spec.Disks, p.Disk)
		return nil
	})
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return p.Disk.Name, nil
}

// ResizeDisk queues the growth of a VM's disk to size.
func (s *Service) ResizeDisk(ctx context.Context, vm *api.VM, disk string, size api.Size) (*api.Task, error) {
	if err := s.diskReady(vm, "resize a disk"); err != nil {
		return nil, err
	}
	d, err := findDisk(vm, disk)
	if err != nil {
		return nil, err
	}
	switch {
	case size > api.MaxDiskSize:
		err = api.Errorf(api.ErrInvalid, "disk size must be at most %s, got %s", api.MaxDiskSize, size)
	case size < d.SizeBytes:
		err = api.Errorf(api.ErrInvalid, "disk %s is %s; disks only grow (asked for %s)", d.Name, d.SizeBytes, size)
	case size == d.SizeBytes:
		err = api.Errorf(api.ErrConflict, "disk %s is already %s", d.Name, d.SizeBytes)
	case d.Thick:
		err = s.checkFree(d.Datastore.ID, size-d.SizeBytes, "growing thick disk "+d.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("resize disk of vm %s: %w", vm.Metadata.Name, err)
	}
	return s.submit(ctx, tasks.New(ctx, api.OpDiskResize, vm, diskResizeParams{Disk: d.Name, Size: size}))
}

func (s *Service) runDiskResize(ctx context.Context, t *tasks.Run) (any, error) {
	var p diskResizeParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if _, err := findDisk(vm, p.Disk); err != nil {
		return nil, err
	}
	t.Progress(ctx, 20, fmt.Sprintf("growing disk %s to %s", p.Disk, p.Size))
	if err := s.hosts.ResizeDisk(ctx, hosts.TargetOf(h), vm.Metadata.ID, p.Disk, int64(p.Size)); err != nil {
		return nil, fmt.Errorf("resize disk %s of vm %s: %w", p.Disk, vm.Metadata.Name, err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		if d, err := findDisk(o.(*api.VM), p.Disk); err == nil {
			d.SizeBytes = p.Size
		}
		return nil
	})
	return p.Size, nil
}

// RemoveDisk queues the removal of a VM's disk.
func (s *Service) RemoveDisk(ctx context.Context, vm *api.VM, disk string) (*api.Task, error) {
	if err := s.diskReady(vm, "remove a disk"); err != nil {
		return nil, err
	}
	d, err := findDisk(vm, disk)
	if err != nil {
		return nil, err
	}
	if d.Bus == api.BusSATA && vm.Status.PowerState != api.PowerOff {
		return nil, api.Errorf(api.ErrConflict, "vm %s is %s: SATA disks cannot be unplugged; stop it first", vm.Metadata.Name, vm.Status.PowerState)
	}
	return s.submit(ctx, tasks.New(ctx, api.OpDiskRemove, vm, diskRemoveParams{Disk: d.Name}))
}

func (s *Service) runDiskRemove(ctx context.Context, t *tasks.Run) (any, error) {
	var p diskRemoveParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	d, err := findDisk(vm, p.Disk)
	if err != nil {
		if t.Resumed {
			return nil, nil
		}
		return nil, err
	}
	msg := "removing disk " + p.Disk
	if vm.Status.PowerState != api.PowerOff {
		msg = "waiting for the guest to release disk " + p.Disk
	}
	t.Progress(ctx, 20, msg)
	if err := s.hosts.RemoveDisk(ctx, hosts.TargetOf(h), vm.Metadata.ID, p.Disk); err != nil && !(t.Resumed && strings.Contains(err.Error(), "no disk")) {
		return nil, fmt.Errorf("remove disk %s of vm %s: %w", p.Disk, vm.Metadata.Name, err)
	}
	// Its current file goes; older ones stay for the snapshots that have them.
	if f, err := s.abs(d.Datastore.ID, d.Path); err == nil {
		if err := s.hosts.RemoveFiles(ctx, hosts.TargetOf(h), []string{f}); err != nil {
			s.log.Warn("cannot remove a removed disk's file", "vm", vm.Metadata.Name, "file", f, "err", err)
		}
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Spec.Disks = slices.DeleteFunc(v.Spec.Disks, func(x api.VMDisk) bool { return x.Name == p.Disk })
		v.Status.Disks = slices.DeleteFunc(v.Status.Disks, func(x api.DiskStatus) bool { return x.Name == p.Disk })
		return nil
	})
	return nil, nil
}
