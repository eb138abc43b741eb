package vms

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// build is one create request being resolved against the inventory.
type build struct {
	s      *Service
	req    *api.VMCreateRequest
	vm     *api.VM
	hostID string // the host the request or a local datastore asks for
	dir    string // the VM's folder on its datastores
	inDC   func(api.Object) bool
}

// Build resolves a create request against the inventory. It returns the
// VM (without a host yet), its cluster, and the host the user asked for
// ("" for any).
func (s *Service) Build(req *api.VMCreateRequest) (*api.VM, *api.Cluster, string, error) {
	cl, hostID, err := s.createCluster(req)
	if err != nil {
		return nil, nil, "", err
	}
	dc := cl.Spec.Datacenter.ID
	folder, err := s.inv.FolderDest(req.Folder, dc)
	if err != nil {
		return nil, nil, "", err
	}
	id := store.NewID()
	b := &build{s: s, req: req, hostID: hostID, dir: fmt.Sprintf("%s-%s", req.Name, id[len(id)-8:]),
		inDC: func(o api.Object) bool { return inventory.DatacenterOf(o) == dc }}
	b.vm = &api.VM{
		Metadata: api.ObjectMeta{ID: id, Name: req.Name, Labels: req.Labels},
		Spec: api.VMSpec{Cluster: api.Ref{ID: cl.Metadata.ID}, Folder: inventory.FolderRef(folder), CPUs: req.CPUs, MemoryBytes: req.Memory,
			Description: req.Description, Disks: []api.VMDisk{}, NICs: []api.VMNIC{}},
		Status: api.VMStatus{Phase: api.PhaseCreating, PowerState: api.PowerOff},
	}
	for _, step := range []func() error{b.disks, b.files, b.image} {
		if err := step(); err != nil {
			return nil, nil, "", err
		}
	}
	vm := b.vm
	vm.Spec.CDROM, vm.Spec.VNC, vm.Spec.CloudInit = req.CDROM, req.VNC, req.CloudInit
	vm.Spec.MaxCPUs, vm.Spec.MaxMemoryBytes = req.MaxCPUs, req.MaxMemory
	vm.Spec.HAPriority = req.HAPriority
	if err := b.nics(); err != nil {
		return nil, nil, "", err
	}
	return vm, cl, b.hostID, nil
}

// createCluster is the cluster a new VM goes in: the one of the host
// named, or the one named (or the only one).
func (s *Service) createCluster(req *api.VMCreateRequest) (*api.Cluster, string, error) {
	if req.Host == "" {
		cl, err := s.inv.PickCluster(req.Cluster)
		return cl, "", err
	}
	ho, err := s.inv.Lookup(api.KindHost, req.Host)
	if err != nil {
		return nil, "", err
	}
	h := ho.(*api.Host)
	cl, ok := state.Get[*api.Cluster](s.st, h.Spec.Cluster.ID)
	if !ok {
		return nil, "", api.Errorf(api.ErrConflict, "host %s is in no cluster", h.Metadata.Name)
	}
	if req.Cluster != "" && req.Cluster != cl.Metadata.Name && req.Cluster != cl.Metadata.ID {
		return nil, "", api.Errorf(api.ErrInvalid, "host %s is in cluster %s, not %s", h.Metadata.Name, cl.Metadata.Name, req.Cluster)
	}
	return cl, h.Metadata.ID, nil
}

// disks adds the disks the request asks for; a local datastore ties the
// VM to its host.
func (b *build) disks() error {
	for i, d := range b.req.Disks {
		o, err := b.s.inv.Pick(api.KindDatastore, d.Datastore, b.inDC)
		if err != nil {
			return fmt.Errorf("disk %d: %w", i, err)
		}
		ds := o.(*api.Datastore)
		if !ds.Spec.Shared {
			if b.hostID == "" {
				b.hostID = ds.Spec.Host.ID
			} else if b.hostID != ds.Spec.Host.ID {
				return api.Errorf(api.ErrInvalid, "disk %d: datastore %s is local to another host", i, ds.Metadata.Name)
			}
		}
		bus := d.Bus
		if bus == "" {
			bus = api.BusVirtio
		}
		name := fmt.Sprintf("disk%d", i)
		b.vm.Spec.Disks = append(b.vm.Spec.Disks, api.VMDisk{Name: name, SizeBytes: d.Size, Datastore: api.Ref{ID: ds.Metadata.ID},
			Bus: bus, Path: b.dir + "/" + name + ".qcow2", Thick: d.Thick})
	}
	return nil
}

// files checks that the files the request names by path are in a
// datastore the VM's host reaches.
func (b *build) files() error {
	for what, p := range map[string]string{"image": b.req.Image, "cdrom": b.req.CDROM} {
		if !filepath.IsAbs(p) {
			continue // none, or a registered image
		}
		hint := "; copy the ISO into a datastore"
		if what == "image" {
			hint = "; copy it into a datastore, or upload it (vdc image import FILE --name NAME, then --image NAME)"
		}
		ds, err := b.s.inv.CheckHostFile(what, p, "a file in a datastore", hint, b.inDC)
		if err != nil {
			return err
		}
		if !ds.Spec.Shared {
			if b.hostID == "" {
				b.hostID = ds.Spec.Host.ID
			} else if b.hostID != ds.Spec.Host.ID {
				return api.Errorf(api.ErrInvalid, "%s %s is on datastore %s, local to another host", what, p, ds.Metadata.Name)
			}
		}
	}
	return nil
}

// image makes the VM from the request's image: a kernel image boots
// directly; a disk image (registered, or a file in a datastore) becomes
// the first disk.
func (b *build) image() error {
	req, vm := b.req, b.vm
	if req.Image == "" {
		return nil
	}
	source := req.Image
	if !filepath.IsAbs(source) {
		var kernel bool
		var err error
		if source, kernel, err = b.registeredImage(); err != nil || kernel {
			return err
		}
	}
	if len(vm.Spec.Disks) == 0 {
		ds, err := b.s.inv.Pick(api.KindDatastore, "", b.inDC)
		if err != nil {
			return fmt.Errorf("disk for image %s: %w", req.Image, err)
		}
		vm.Spec.Disks = append(vm.Spec.Disks, api.VMDisk{Name: "disk0", Datastore: api.Ref{ID: ds.GetMeta().ID}, Bus: api.BusVirtio,
			Path: b.dir + "/disk0.qcow2"})
		if img, ok := state.Lookup[*api.Image](b.s.st, req.Image); ok {
			vm.Spec.Disks[0].SizeBytes = img.Status.VirtualSize
		}
	}
	vm.Spec.Disks[0].Source, vm.Spec.Disks[0].Linked = source, req.Linked
	vm.Spec.Disks[0].ForeignSource = vm.Spec.Image.IsZero() // a file the user named, not a registered image
	return nil
}

// registeredImage applies the registered image the request names: a
// kernel image sets the VM's boot (kernel is true); a disk image gives the
// path of its disk, the source of the VM's first disk.
func (b *build) registeredImage() (source string, kernel bool, err error) {
	req, vm := b.req, b.vm
	o, err := b.s.inv.Lookup(api.KindImage, req.Image)
	if err != nil {
		return "", false, err
	}
	img := o.(*api.Image)
	if img.Status.Phase != api.ImageReady {
		return "", false, api.Errorf(api.ErrConflict, "image %s is not ready (%s): upload its files first", img.Metadata.Name, img.Status.Phase)
	}
	ds, ok := state.Get[*api.Datastore](b.s.st, img.Spec.Datastore.ID)
	if !ok || !b.inDC(ds) {
		return "", false, api.Errorf(api.ErrConflict, "image %s is on a datastore outside this VM's datacenter", img.Metadata.Name)
	}
	vm.Spec.Image = api.Ref{ID: img.Metadata.ID}
	if img.Spec.Type == api.ImageKernel {
		if req.Linked {
			return "", false, api.Errorf(api.ErrInvalid, "image %s is a kernel image: there is no disk to link to", img.Metadata.Name)
		}
		vm.Spec.Boot = &api.VMBoot{Kernel: imageFile(img, "kernel").Path, Initrd: imageFile(img, "initrd").Path, Cmdline: img.Spec.Cmdline}
		return "", true, nil
	}
	if len(vm.Spec.Disks) > 0 && vm.Spec.Disks[0].SizeBytes == 0 {
		vm.Spec.Disks[0].SizeBytes = img.Status.VirtualSize
	}
	return filepath.Join(ds.Spec.Path, imageFile(img, "disk").Path), false, nil
}

// imageFile is the file of an image with this name (nil if it has none).
func imageFile(im *api.Image, name string) *api.ImageFile {
	for i := range im.Status.Files {
		if im.Status.Files[i].Name == name {
			return &im.Status.Files[i]
		}
	}
	return nil
}

// nics adds the network adapters the request asks for, or one on the
// datacenter's only port group when it names none.
func (b *build) nics() error {
	nics := b.req.NICs
	if nics == nil {
		pgs := state.List(b.s.st, func(pg *api.PortGroup) bool { return b.inDC(pg) })
		if len(pgs) == 1 {
			nics = []api.NICRequest{{PortGroup: pgs[0].Metadata.ID}}
		}
	}
	used := map[string]bool{} // by this request
	for i, n := range nics {
		o, err := b.s.inv.Pick(api.KindPortGroup, n.PortGroup, b.inDC)
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		pg := o.(*api.PortGroup)
		if err := b.s.inv.PortGroupInCluster(pg, b.vm.Spec.Cluster.ID); err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		ip, err := b.s.inv.NICAddress(pg, used)
		if err != nil {
			return fmt.Errorf("nic %d: %w", i, err)
		}
		used[ip] = true
		mac := strings.ToLower(n.MAC)
		if mac == "" {
			mac = b.s.inv.NewMAC(used)
		} else if used[mac] || b.s.inv.Tally.MACInUse(mac) {
			return api.Errorf(api.ErrConflict, "nic %d: MAC address %s is already in use", i, mac)
		}
		used[mac] = true
		model := n.Model
		if model == "" {
			model = "virtio"
		}
		b.vm.Spec.NICs = append(b.vm.Spec.NICs, api.VMNIC{Name: fmt.Sprintf("nic%d", i), PortGroup: api.Ref{ID: o.GetMeta().ID}, MAC: mac, Model: model, IPv4: ip})
	}
	return nil
}
