package server

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// GET /api/v1/vms?host=&cluster=&power=
func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	q := r.URL.Query()
	var hostID, clusterID string
	for param, id := range map[string]*string{"host": &hostID, "cluster": &clusterID} {
		if v := q.Get(param); v != "" {
			kind := api.KindHost
			if param == "cluster" {
				kind = api.KindCluster
			}
			o, err := s.inv.Lookup(kind, v)
			if err != nil {
				fail(w, err)
				return
			}
			*id = o.GetMeta().ID
		}
	}
	power := q.Get("power")
	items := make([]api.Object, 0, s.cache.Count(api.KindVM))
	s.cache.Each(api.KindVM, func(o api.Object) {
		vm := o.(*api.VM)
		if (hostID == "" || vm.Spec.Host.ID == hostID) && (clusterID == "" || vm.Spec.Cluster.ID == clusterID) &&
			(power == "" || vm.Status.PowerState == power) {
			items = append(items, o)
		}
	})
	inventory.SortByName(items)
	var buf bytes.Buffer
	s.writeList(&buf, items, s.cache.Rev())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
}

// vmCreateParams are kept in the vm.create task.
type vmCreateParams struct {
	PowerOn bool `json:"powerOn,omitempty"`
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

func validateCreate(req *api.VMCreateRequest) error {
	if err := inventory.FirstErr(inventory.ValidateCommon("vm", req.Name, req.Labels, req.Description), inventory.ValidateVMShape(req.CPUs, req.Memory),
		validateHotAddRoom(req.CPUs, req.Memory, req.MaxCPUs, req.MaxMemory), validateHAPriority(req.HAPriority), validateCloudInit(req.CloudInit)); err != nil {
		return err
	}
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
	if len(req.NICs) > api.MaxNICsPerVM {
		return api.Errorf(api.ErrInvalid, "at most %d NICs, got %d", api.MaxNICsPerVM, len(req.NICs))
	}
	for i, n := range req.NICs {
		if n.PortGroup == "" {
			return api.Errorf(api.ErrInvalid, "nic %d: no port group given", i)
		}
		if n.MAC != "" {
			if err := validateMAC(n.MAC); err != nil {
				return fmt.Errorf("nic %d: %w", i, err)
			}
		}
		switch n.Model {
		case "", "virtio", "e1000", "rtl8139":
		default:
			return api.Errorf(api.ErrInvalid, "nic %d: model must be virtio, e1000 or rtl8139, got %q", i, n.Model)
		}
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

// POST /api/v1/vms
func (s *Server) createVM(w http.ResponseWriter, r *http.Request) {
	var req api.VMCreateRequest
	if !decode(w, r, &req) {
		return
	}
	if req.FromTemplate != "" {
		s.createFromTemplate(w, r, req)
		return
	}
	if err := validateCreate(&req); err != nil {
		fail(w, err)
		return
	}
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	if err := s.inv.VMNameFree(req.Name, nil); err != nil {
		fail(w, err)
		return
	}
	vm, cl, hostID, err := s.buildVM(&req)
	if err != nil {
		fail(w, err)
		return
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
	txn := s.store.Txn()
	release, err := s.places.PlaceNew(txn, vm, cl, hostID, req.PowerOn, extra...)
	if err != nil {
		fail(w, fmt.Errorf("place vm %q in cluster %s: %w", req.Name, cl.Metadata.Name, err))
		return
	}
	defer release()
	t := tasks.New(ctx, api.OpVMCreate, vm, vmCreateParams{PowerOn: req.PowerOn})
	t, err = s.submitter.Submit(ctx, txn, t)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// buildVM resolves a create request against the inventory. It returns the
// VM (without a host yet), its cluster, and the host the user asked for.
func (s *Server) buildVM(req *api.VMCreateRequest) (*api.VM, *api.Cluster, string, error) {
	var hostID string
	var cl *api.Cluster
	if req.Host != "" {
		ho, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return nil, nil, "", err
		}
		h := ho.(*api.Host)
		hostID = h.Metadata.ID
		co, ok := s.cache.Get(api.KindCluster, h.Spec.Cluster.ID)
		if !ok {
			return nil, nil, "", api.Errorf(api.ErrConflict, "host %s is in no cluster", h.Metadata.Name)
		}
		cl = co.(*api.Cluster)
		if req.Cluster != "" && req.Cluster != cl.Metadata.Name && req.Cluster != cl.Metadata.ID {
			return nil, nil, "", api.Errorf(api.ErrInvalid, "host %s is in cluster %s, not %s", h.Metadata.Name, cl.Metadata.Name, req.Cluster)
		}
	} else {
		var err error
		if cl, err = s.inv.PickCluster(req.Cluster); err != nil {
			return nil, nil, "", err
		}
	}
	dc := cl.Spec.Datacenter.ID
	inDC := func(o api.Object) bool { return inventory.DatacenterOf(o) == dc }
	id := store.NewID()
	vm := &api.VM{
		Metadata: api.ObjectMeta{ID: id, Name: req.Name, Labels: req.Labels},
		Spec: api.VMSpec{Cluster: api.Ref{ID: cl.Metadata.ID}, CPUs: req.CPUs, MemoryBytes: req.Memory,
			Description: req.Description, Disks: []api.VMDisk{}, NICs: []api.VMNIC{}},
		Status: api.VMStatus{Phase: api.PhaseCreating, PowerState: api.PowerOff},
	}
	dir := fmt.Sprintf("%s-%s", req.Name, id[len(id)-8:])
	for i, d := range req.Disks {
		o, err := s.inv.Pick(api.KindDatastore, d.Datastore, inDC)
		if err != nil {
			return nil, nil, "", fmt.Errorf("disk %d: %w", i, err)
		}
		ds := o.(*api.Datastore)
		if !ds.Spec.Shared {
			if hostID == "" {
				hostID = ds.Spec.Host.ID
			} else if hostID != ds.Spec.Host.ID {
				return nil, nil, "", api.Errorf(api.ErrInvalid, "disk %d: datastore %s is local to another host", i, ds.Metadata.Name)
			}
		}
		bus := d.Bus
		if bus == "" {
			bus = api.BusVirtio
		}
		name := fmt.Sprintf("disk%d", i)
		vm.Spec.Disks = append(vm.Spec.Disks, api.VMDisk{Name: name, SizeBytes: d.Size, Datastore: api.Ref{ID: ds.Metadata.ID},
			Bus: bus, Path: dir + "/" + name + ".qcow2", Thick: d.Thick})
	}
	// The files named by path must be in a datastore the VM's host reaches.
	for what, p := range map[string]string{"image": req.Image, "cdrom": req.CDROM} {
		if !filepath.IsAbs(p) {
			continue // none, or a registered image
		}
		hint := "; copy the ISO into a datastore"
		if what == "image" {
			hint = "; copy it into a datastore, or upload it (vdc image import FILE --name NAME, then --image NAME)"
		}
		ds, err := s.inv.CheckHostFile(what, p, "a file in a datastore", hint, inDC)
		if err != nil {
			return nil, nil, "", err
		}
		if !ds.Spec.Shared {
			if hostID == "" {
				hostID = ds.Spec.Host.ID
			} else if hostID != ds.Spec.Host.ID {
				return nil, nil, "", api.Errorf(api.ErrInvalid, "%s %s is on datastore %s, local to another host", what, p, ds.Metadata.Name)
			}
		}
	}
	if err := s.applyImage(req, vm, dir, inDC); err != nil {
		return nil, nil, "", err
	}
	vm.Spec.CDROM, vm.Spec.VNC, vm.Spec.CloudInit = req.CDROM, req.VNC, req.CloudInit
	vm.Spec.MaxCPUs, vm.Spec.MaxMemoryBytes = req.MaxCPUs, req.MaxMemory
	vm.Spec.HAPriority = req.HAPriority
	nics := req.NICs
	if nics == nil {
		var pgs []api.Object
		s.cache.Each(api.KindPortGroup, func(o api.Object) {
			if inDC(o) {
				pgs = append(pgs, o)
			}
		})
		if len(pgs) == 1 {
			nics = []api.NICRequest{{PortGroup: pgs[0].GetMeta().ID}}
		}
	}
	used := map[string]bool{} // by this request
	for i, n := range nics {
		o, err := s.inv.Pick(api.KindPortGroup, n.PortGroup, inDC)
		if err != nil {
			return nil, nil, "", fmt.Errorf("nic %d: %w", i, err)
		}
		mac := strings.ToLower(n.MAC)
		if mac == "" {
			mac = s.inv.NewMAC(used)
		} else if used[mac] || s.tally.MACInUse(mac) {
			return nil, nil, "", api.Errorf(api.ErrConflict, "nic %d: MAC address %s is already in use", i, mac)
		}
		used[mac] = true
		model := n.Model
		if model == "" {
			model = "virtio"
		}
		vm.Spec.NICs = append(vm.Spec.NICs, api.VMNIC{Name: fmt.Sprintf("nic%d", i), PortGroup: api.Ref{ID: o.GetMeta().ID}, MAC: mac, Model: model})
	}
	return vm, cl, hostID, nil
}

// applyImage makes a VM from an image: a kernel image boots directly; a
// disk image (registered, or a file in a datastore) becomes the first disk.
func (s *Server) applyImage(req *api.VMCreateRequest, vm *api.VM, dir string, inDC func(api.Object) bool) error {
	if req.Image == "" {
		return nil
	}
	source := req.Image
	if !filepath.IsAbs(source) {
		o, err := s.inv.Lookup(api.KindImage, req.Image)
		if err != nil {
			return err
		}
		img := o.(*api.Image)
		if img.Status.Phase != api.ImageReady {
			return api.Errorf(api.ErrConflict, "image %s is not ready (%s): upload its files first", img.Metadata.Name, img.Status.Phase)
		}
		dso, ok := s.cache.Get(api.KindDatastore, img.Spec.Datastore.ID)
		if !ok || !inDC(dso) {
			return api.Errorf(api.ErrConflict, "image %s is on a datastore outside this VM's datacenter", img.Metadata.Name)
		}
		vm.Spec.Image = api.Ref{ID: img.Metadata.ID}
		if img.Spec.Type == api.ImageKernel {
			if req.Linked {
				return api.Errorf(api.ErrInvalid, "image %s is a kernel image: there is no disk to link to", img.Metadata.Name)
			}
			vm.Spec.Boot = &api.VMBoot{Kernel: imageFile(img, "kernel").Path, Initrd: imageFile(img, "initrd").Path, Cmdline: img.Spec.Cmdline}
			return nil
		}
		source = filepath.Join(dso.(*api.Datastore).Spec.Path, imageFile(img, "disk").Path)
		if len(vm.Spec.Disks) > 0 && vm.Spec.Disks[0].SizeBytes == 0 {
			vm.Spec.Disks[0].SizeBytes = img.Status.VirtualSize
		}
	}
	if len(vm.Spec.Disks) == 0 {
		ds, err := s.inv.Pick(api.KindDatastore, "", inDC)
		if err != nil {
			return fmt.Errorf("disk for image %s: %w", req.Image, err)
		}
		vm.Spec.Disks = append(vm.Spec.Disks, api.VMDisk{Name: "disk0", Datastore: api.Ref{ID: ds.GetMeta().ID}, Bus: api.BusVirtio,
			Path: dir + "/disk0.qcow2"})
		if o, ok := s.cache.Lookup(api.KindImage, req.Image); ok {
			vm.Spec.Disks[0].SizeBytes = o.(*api.Image).Status.VirtualSize
		}
	}
	vm.Spec.Disks[0].Source, vm.Spec.Disks[0].Linked = source, req.Linked
	vm.Spec.Disks[0].ForeignSource = vm.Spec.Image.IsZero() // a file the user named, not a registered image
	return nil
}

// PATCH /api/v1/vms/{name}: rename, relabel, describe, VNC; CPUs and
// memory while the VM is off, or growing while it runs (hot-add: a
// vm.hot-add task, in the same transaction as the rest). The host gets
// a definition changed while off at the next start.
func (s *Server) updateVM(w http.ResponseWriter, r *http.Request) {
	var req api.VMUpdateRequest
	if !decode(w, r, &req) {
		return
	}
	var hot *vmHotAddParams
	var note string
	t, err := s.modify(r, api.KindVM, func(o api.Object) error {
		vm := o.(*api.VM)
		hot, note = nil, ""
		err := inventory.FirstErr(inventory.CheckReady(vm), inventory.Rename("vm", &vm.Metadata, req.Name), inventory.Relabel(&vm.Metadata, req.Labels), inventory.Redescribe(&vm.Spec.Description, req.Description))
		if err == nil && req.HAPriority != nil {
			// Takes effect at once: the host's HA settings change, and a
			// running VM takes or lets go of its lease.
			err = validateHAPriority(*req.HAPriority)
			vm.Spec.HAPriority = *req.HAPriority
		}
		if err != nil {
			return err
		}
		running := vm.Status.PowerState != api.PowerOff
		if req.VNC != nil {
			vm.Spec.VNC = *req.VNC
			if has := vm.Status.VNC != ""; running && has != *req.VNC {
				state := map[bool]string{true: "on", false: "off"}[*req.VNC]
				note = fmt.Sprintf("vm %s is %s: its VNC display turns %s at its next power-on", vm.Metadata.Name, vm.Status.PowerState, state)
			}
		}
		if req.MaxCPUs != nil || req.MaxMemory != nil {
			if running {
				return api.Errorf(api.ErrConflict, "vm %s is %s: set max-cpus and max-memory while it is off (they shape the hardware it starts with)", vm.Metadata.Name, vm.Status.PowerState)
			}
			if req.MaxCPUs != nil {
				vm.Spec.MaxCPUs = *req.MaxCPUs
			}
			if req.MaxMemory != nil {
				vm.Spec.MaxMemoryBytes = *req.MaxMemory
			}
		}
		cpus, mem := vm.Spec.CPUs, vm.Spec.MemoryBytes
		if req.CPUs != nil {
			cpus = *req.CPUs
		}
		if req.Memory != nil {
			mem = *req.Memory
		}
		if err := inventory.FirstErr(inventory.ValidateVMShape(cpus, mem), validateHotAddRoom(cpus, mem, vm.Spec.MaxCPUs, vm.Spec.MaxMemoryBytes)); err != nil {
			return err
		}
		if !running || (cpus == vm.Spec.CPUs && mem == vm.Spec.MemoryBytes) {
			vm.Spec.CPUs, vm.Spec.MemoryBytes = cpus, mem
			return nil
		}
		if err := s.checkHotAdd(vm, cpus, mem); err != nil {
			return err
		}
		// The spec takes the new size once the host has added it.
		hot = &vmHotAddParams{CPUs: cpus, Memory: mem}
		return nil
	}, func(upd api.Object) *api.Task {
		if hot != nil {
			return tasks.New(r.Context(), api.OpVMHotAdd, upd, hot)
		}
		t := tasks.Done(tasks.New(r.Context(), tasks.OpName(api.KindVM, "update"), upd, nil), upd)
		t.Message = note
		return t
	})
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// DELETE /api/v1/vms/{name}?force=true
func (s *Server) deleteVM(w http.ResponseWriter, r *http.Request) {
	force, err := queryBool(r, "force")
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.modify(r, api.KindVM, func(o api.Object) error {
		vm := o.(*api.VM)
		if err := inventory.CheckReady(vm); err != nil {
			return err
		}
		if _, err := s.inv.VMHost(vm); err != nil {
			return fmt.Errorf("cannot delete vm %s: %w", vm.Metadata.Name, err)
		}
		if state.HoldsResources(vm) && !force {
			return api.Errorf(api.ErrConflict, "vm %s is %s: stop it first, or delete with force", vm.Metadata.Name, vm.Status.PowerState)
		}
		if deps := s.vmDependents(vm); len(deps) > 0 {
			return api.Errorf(api.ErrConflict, "cannot delete vm %s: linked clones depend on its disks: %s", vm.Metadata.Name, strings.Join(inventory.FirstN(deps, 10), ", "))
		}
		vm.Status.Phase = api.PhaseDeleting
		return nil
	}, func(upd api.Object) *api.Task {
		return tasks.New(r.Context(), api.OpVMDelete, upd, vmDeleteParams{Force: force})
	})
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

type vmDeleteParams struct {
	Force bool `json:"force,omitempty"`
}

// What each power action needs and leads to.
var powerActions = map[string]struct {
	from []string // states it may start from
	to   string
}{
	api.ActionStart:   {[]string{api.PowerOff, api.PowerSuspended}, api.PowerOn},
	api.ActionStop:    {[]string{api.PowerOn, api.PowerSuspended}, api.PowerOff},
	api.ActionReset:   {[]string{api.PowerOn}, api.PowerOn},
	api.ActionSuspend: {[]string{api.PowerOn}, api.PowerSuspended},
	api.ActionResume:  {[]string{api.PowerSuspended}, api.PowerOn},
}

// checkPower says whether a power action can start from the VM's state.
func checkPower(vm *api.VM, action string) error {
	pa := powerActions[action]
	for _, f := range pa.from {
		if vm.Status.PowerState == f {
			return nil
		}
	}
	if vm.Status.PowerState == pa.to && action != api.ActionReset {
		return api.Errorf(api.ErrConflict, "vm %s is already %s", vm.Metadata.Name, pa.to)
	}
	return api.Errorf(api.ErrConflict, "cannot %s vm %s: it is %s (needs %s)", action, vm.Metadata.Name, vm.Status.PowerState, strings.Join(pa.from, " or "))
}

// POST /api/v1/vms/{name}/power
func (s *Server) powerVM(w http.ResponseWriter, r *http.Request) {
	var req api.PowerRequest
	if !decode(w, r, &req) {
		return
	}
	if _, ok := powerActions[req.Action]; !ok {
		names := make([]string, 0, len(powerActions))
		for a := range powerActions {
			names = append(names, a)
		}
		sort.Strings(names)
		fail(w, api.Errorf(api.ErrInvalid, "power action must be one of %s, got %q", strings.Join(names, ", "), req.Action))
		return
	}
	if req.Force && req.Action != api.ActionStop {
		fail(w, api.Errorf(api.ErrInvalid, "force applies only to stop"))
		return
	}
	if req.TimeoutSeconds < 0 || req.TimeoutSeconds > 3600 {
		fail(w, api.Errorf(api.ErrInvalid, "timeoutSeconds must be between 0 (default %s) and 3600, got %d", api.DefaultStopTimeout, req.TimeoutSeconds))
		return
	}
	vm, h, err := s.pathVM(r)
	if err == nil {
		err = inventory.FirstErr(inventory.CheckReady(vm), checkPower(vm, req.Action))
	}
	if err == nil && vm.Spec.Template {
		err = api.Errorf(api.ErrConflict, "vm %s is a template: it does not run; clone it (vdc vm create NEW --from-template %s)", vm.Metadata.Name, vm.Metadata.Name)
	}
	if err == nil && req.Action == api.ActionStart && vm.Status.PowerState == api.PowerOff {
		err = s.checkRoom(vm, h)
	}
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.submitter.Submit(r.Context(), s.store.Txn(), tasks.New(r.Context(), api.OpVMPower(req.Action), vm, req))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// checkRoom answers at once when a power-on cannot fit; the task checks
// again, holding the room.
func (s *Server) checkRoom(vm *api.VM, h *api.Host) error {
	co, ok := s.cache.Get(api.KindCluster, vm.Spec.Cluster.ID)
	if !ok {
		return api.Errorf(api.ErrConflict, "vm %s is in no cluster", vm.Metadata.Name)
	}
	if _, err := s.places.Admit(vm, co.(*api.Cluster), h, false); err != nil {
		return err
	}
	return s.checkHAAdmission(vm, co.(*api.Cluster), h)
}
