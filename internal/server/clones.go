package server

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path"
	"slices"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

const (
	opMarkTemplate   = "vm.mark-template"
	opUnmarkTemplate = "vm.unmark-template"
)

// cloneParams are kept in the vm.clone task, which targets the source
// (so that the source's snapshots cannot change under it) and creates the
// new VM, recorded at once in phase "creating".
type cloneParams struct {
	VM       string `json:"vm"` // the new VM's ID
	Snapshot string `json:"snapshot,omitempty"`
	Linked   bool   `json:"linked,omitempty"`
	PowerOn  bool   `json:"powerOn,omitempty"`
	// Sources are the files each new disk is made from (absolute).
	Sources map[string]string `json:"sources"`
}

// POST /api/v1/vms/{name}/clone
func (s *Server) cloneVM(w http.ResponseWriter, r *http.Request) {
	var req api.CloneRequest
	if !decode(w, r, &req) {
		return
	}
	s.cloneWith(w, r, req)
}

func (s *Server) cloneWith(w http.ResponseWriter, r *http.Request, req api.CloneRequest) {
	ctx := r.Context()
	err := inventory.FirstErr(inventory.ValidateCommon("vm", req.Name, req.Labels, req.Description), validateCloudInit(req.CloudInit))
	if err == nil && (req.CPUs != 0 || req.Memory != 0) {
		err = inventory.ValidateVMShape(max(req.CPUs, 1), max(req.Memory, api.MinVMMemory))
	}
	if err != nil {
		fail(w, err)
		return
	}
	src, srcHost, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	vm, p, cl, hostID, err := s.planClone(src, srcHost, req)
	if err != nil {
		fail(w, fmt.Errorf("clone vm %s: %w", src.Metadata.Name, err))
		return
	}
	txn := s.store.Txn()
	release, err := s.places.PlaceNew(txn, vm, cl, hostID, req.PowerOn)
	if err != nil {
		fail(w, fmt.Errorf("place clone %s of vm %s: %w", req.Name, src.Metadata.Name, err))
		return
	}
	defer release()
	if p.Linked {
		// The new host must reach the bases too.
		if err := s.reachesFiles(vm.Spec.Host.ID, src); err != nil {
			fail(w, fmt.Errorf("clone vm %s: %w", src.Metadata.Name, err))
			return
		}
	}
	t, err := s.submitter.Submit(ctx, txn, tasks.New(ctx, api.OpVMClone, src, p))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// reachesFiles checks that a host reaches the datastores of a VM's disks.
func (s *Server) reachesFiles(hostID string, src *api.VM) error {
	o, ok := s.cache.Get(api.KindHost, hostID)
	if !ok {
		return api.Errorf(api.ErrConflict, "host %s is gone", hostID)
	}
	h := o.(*api.Host)
	for _, d := range src.Spec.Disks {
		if !slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == d.Datastore.ID }) {
			return api.Errorf(api.ErrConflict, "host %s does not reach the datastore of %s's disk %s, which a linked clone reads", h.Metadata.Name, src.Metadata.Name, d.Name)
		}
	}
	return nil
}

// planClone builds the new VM from the source (or one of its snapshots).
func (s *Server) planClone(src *api.VM, srcHost *api.Host, req api.CloneRequest) (*api.VM, cloneParams, *api.Cluster, string, error) {
	p := cloneParams{Linked: req.Linked, PowerOn: req.PowerOn, Sources: map[string]string{}}
	if err := inventory.CheckReady(src); err != nil {
		return nil, p, nil, "", err
	}
	if err := s.inv.VMNameFree(req.Name, nil); err != nil {
		return nil, p, nil, "", err
	}
	disks, cpus, mem := src.Spec.Disks, src.Spec.CPUs, src.Spec.MemoryBytes
	if req.Snapshot != "" {
		sn, err := findSnapshot(src, req.Snapshot)
		if err != nil {
			return nil, p, nil, "", err
		}
		disks, cpus, mem = sn.Disks, sn.CPUs, sn.MemoryBytes
		p.Snapshot = sn.ID
	} else if req.Linked && !src.Spec.Template {
		return nil, p, nil, "", api.Errorf(api.ErrInvalid, "a linked clone needs frozen disks to link to: give a snapshot of vm %s (--snapshot), or mark it a template", src.Metadata.Name)
	}
	if !req.Linked && req.Snapshot == "" && src.Status.PowerState == api.PowerUnknown {
		return nil, p, nil, "", api.Errorf(api.ErrConflict, "the state of vm %s is unknown: %s", src.Metadata.Name, src.Status.Message)
	}
	if req.CPUs > 0 {
		cpus = req.CPUs
	}
	if req.Memory > 0 {
		mem = req.Memory
	}
	co, ok := s.cache.Get(api.KindCluster, src.Spec.Cluster.ID)
	if !ok {
		return nil, p, nil, "", api.Errorf(api.ErrConflict, "vm %s is in no cluster", src.Metadata.Name)
	}
	cl := co.(*api.Cluster)
	var hostID string
	if req.Host != "" {
		ho, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return nil, p, nil, "", err
		}
		hostID = ho.GetMeta().ID
		if ho.(*api.Host).Spec.Cluster.ID != cl.Metadata.ID {
			co, ok := s.cache.Get(api.KindCluster, ho.(*api.Host).Spec.Cluster.ID)
			if !ok || inventory.DatacenterOf(co) != inventory.DatacenterOf(cl) {
				return nil, p, nil, "", api.Errorf(api.ErrConflict, "host %s is in another datacenter", req.Host)
			}
			cl = co.(*api.Cluster)
		}
	}
	var ds *api.Datastore
	if req.Datastore != "" {
		o, err := s.inv.Lookup(api.KindDatastore, req.Datastore)
		if err != nil {
			return nil, p, nil, "", err
		}
		ds = o.(*api.Datastore)
		if inventory.DatacenterOf(ds) != inventory.DatacenterOf(cl) {
			return nil, p, nil, "", api.Errorf(api.ErrConflict, "datastore %s is in another datacenter", ds.Metadata.Name)
		}
		if !ds.Spec.Shared {
			if hostID == "" {
				hostID = ds.Spec.Host.ID
			} else if hostID != ds.Spec.Host.ID {
				return nil, p, nil, "", api.Errorf(api.ErrInvalid, "datastore %s is local to another host", ds.Metadata.Name)
			}
		}
	}
	id := store.NewID()
	dir := fmt.Sprintf("%s-%s", req.Name, id[len(id)-8:])
	// A clone keeps its source's labels; the request's add to them or
	// change them.
	labels := maps.Clone(src.Metadata.Labels)
	if len(req.Labels) > 0 && labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, req.Labels)
	vm := &api.VM{
		Metadata: api.ObjectMeta{ID: id, Name: req.Name, Labels: labels},
		Spec: api.VMSpec{Cluster: api.Ref{ID: cl.Metadata.ID}, CPUs: cpus, MemoryBytes: mem, Description: req.Description,
			Image: src.Spec.Image, Boot: src.Spec.Boot, CDROM: src.Spec.CDROM, VNC: src.Spec.VNC, CloudInit: src.Spec.CloudInit,
			Disks: []api.VMDisk{}, NICs: []api.VMNIC{}},
		Status: api.VMStatus{Phase: api.PhaseCreating, PowerState: api.PowerOff},
	}
	if req.CloudInit != nil {
		vm.Spec.CloudInit = req.CloudInit
	}
	// The source's room for hot-add goes along, never below the clone's
	// own size.
	if m := src.Spec.MaxCPUs; m != 0 {
		vm.Spec.MaxCPUs = max(m, cpus)
	}
	if m := src.Spec.MaxMemoryBytes; m != 0 {
		vm.Spec.MaxMemoryBytes = max(m, mem)
	}
	var need api.Size
	for _, d := range disks {
		f, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return nil, p, nil, "", err
		}
		nd := api.VMDisk{Name: d.Name, SizeBytes: d.SizeBytes, Datastore: d.Datastore, Bus: d.Bus, Path: path.Join(dir, d.Name+".qcow2"), Slot: d.Slot}
		if ds != nil {
			nd.Datastore = api.Ref{ID: ds.Metadata.ID}
		}
		if req.Linked {
			nd.Source, nd.Linked = f, true
		} else {
			need += allocatedOf(src, d.Name)
		}
		p.Sources[d.Name] = f
		vm.Spec.Disks = append(vm.Spec.Disks, nd)
	}
	if !req.Linked && len(vm.Spec.Disks) > 0 {
		if err := s.checkFree(vm.Spec.Disks[0].Datastore.ID, need, "a full copy of the disks of vm "+src.Metadata.Name); err != nil {
			return nil, p, nil, "", err
		}
	}
	used := map[string]bool{}
	for _, n := range src.Spec.NICs {
		mac := s.inv.NewMAC(used)
		used[mac] = true
		n.MAC = mac
		vm.Spec.NICs = append(vm.Spec.NICs, n)
	}
	p.VM = id
	return vm, p, cl, hostID, nil
}

// allocatedOf is what a disk's data takes, as its host last measured.
func allocatedOf(vm *api.VM, disk string) api.Size {
	for _, d := range vm.Status.Disks {
		if d.Name == disk {
			return d.AllocatedBytes + d.SnapshotBytes
		}
	}
	return 0
}

func (s *Server) runClone(ctx context.Context, t *tasks.Run) (any, error) {
	var p cloneParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	start := time.Now()
	o, err := s.store.Get(ctx, api.KindVM, p.VM)
	if err != nil {
		if errors.Is(err, api.ErrNotFound) && t.Resumed {
			return nil, api.Errorf(api.ErrConflict, "the clone was undone when the server restarted")
		}
		return nil, err
	}
	vm := o.(*api.VM)
	res := api.CloneResult{VM: api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name}, Linked: p.Linked}
	if vm.Status.Phase != api.PhaseCreating {
		return res, nil // done before the server restarted
	}
	so, err := s.store.Get(ctx, api.KindVM, t.Task.Target.ID)
	if err != nil {
		return nil, s.undoClone(ctx, vm, nil, nil, fmt.Errorf("the source vm: %w", err))
	}
	src := so.(*api.VM)
	h, err := s.inv.VMHost(vm)
	if err != nil {
		return nil, s.undoClone(ctx, vm, nil, nil, err)
	}
	var copied []string
	var copier *api.Host
	if !p.Linked {
		copier, copied, err = s.copyDisks(ctx, t, src, vm, p, &res)
		if err != nil {
			return nil, s.undoClone(ctx, vm, copier, copied, err)
		}
	}
	cfg, err := s.inv.VMConfig(vm)
	if err != nil {
		return nil, s.undoClone(ctx, vm, copier, copied, err)
	}
	t.Progress(ctx, 90, "defining the clone on host "+h.Metadata.Name)
	st, err := s.agents.Define(ctx, hosts.TargetOf(h), cfg)
	if err != nil {
		return nil, s.undoClone(ctx, vm, copier, copied, fmt.Errorf("define the clone on host %s: %w", h.Metadata.Name, err))
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Status.Phase = api.PhaseReady
		return nil
	})
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	res.TookMs = time.Since(start).Milliseconds()
	if p.PowerOn {
		t.After(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = s.submitter.Submit(ctx, s.store.Txn(), tasks.New(ctx, api.OpVMPower(api.ActionStart), vm, api.PowerRequest{Action: api.ActionStart}))
		})
	}
	return res, nil
}

// undoClone removes what a failed clone made.
func (s *Server) undoClone(ctx context.Context, vm *api.VM, copier *api.Host, copied []string, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if copier != nil && len(copied) > 0 {
		_ = s.agents.RemoveFiles(cctx, hosts.TargetOf(copier), copied)
	}
	if h, err := s.inv.VMHost(vm); err == nil {
		_ = s.agents.Undefine(cctx, hosts.TargetOf(h), vm.Metadata.ID, true)
	}
	if err := s.inv.RemoveVM(cctx, vm); err != nil {
		s.log.Error("cannot remove the VM of a failed clone", "vm", vm.Metadata.Name, "err", err)
	}
	return fmt.Errorf("clone %s: %w; nothing of it is left", vm.Metadata.Name, cause)
}

// copyDisks makes the full copies, one disk after the other, on a host
// that reaches both ends: the source's own host when it copies a running
// VM's disks (a point-in-time copy while the guest runs).
func (s *Server) copyDisks(ctx context.Context, t *tasks.Run, src, vm *api.VM, p cloneParams, res *api.CloneResult) (*api.Host, []string, error) {
	live := p.Snapshot == "" && src.Status.PowerState != api.PowerOff
	var dss []string
	for _, d := range vm.Spec.Disks {
		dss = append(dss, d.Datastore.ID)
	}
	srcDisks := src.Spec.Disks
	if p.Snapshot != "" {
		if sn := taskSnapshot(src, p.Snapshot); sn != nil {
			srcDisks = sn.Disks
		}
	}
	for _, d := range srcDisks {
		dss = append(dss, d.Datastore.ID)
	}
	var copier *api.Host
	if live {
		h, err := s.inv.VMHost(src)
		if err != nil {
			return nil, nil, err
		}
		copier = h
	} else {
		for _, id := range []string{vm.Spec.Host.ID, src.Spec.Host.ID} {
			if o, ok := s.cache.Get(api.KindHost, id); ok && s.reachesAll(o.(*api.Host), dss) {
				copier = o.(*api.Host)
				break
			}
		}
		if copier == nil {
			s.cache.Each(api.KindHost, func(o api.Object) {
				if h := o.(*api.Host); copier == nil && s.reachesAll(h, dss) {
					copier = h
				}
			})
		}
	}
	if copier == nil || !s.reachesAll(copier, dss) {
		return nil, nil, api.Errorf(api.ErrConflict, "no connected host reaches both the source disks and the clone's datastore")
	}
	var copied []string
	for i, d := range vm.Spec.Disks {
		dst, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return copier, copied, err
		}
		c := hypervisor.DiskCopy{Dst: dst, File: p.Sources[d.Name]}
		if live {
			c = hypervisor.DiskCopy{Dst: dst, VM: src.Metadata.ID, Disk: d.Name}
		}
		job, err := s.agents.CopyDisk(ctx, hosts.TargetOf(copier), c)
		if err != nil {
			return copier, copied, fmt.Errorf("copy disk %s: %w", d.Name, err)
		}
		copied = append(copied, dst)
		done, err := s.inv.FollowJob(ctx, t, copier, job, func(j agent.Job) (int, string) {
			pct := 5 + (85*i+85*int(min(j.Done*100/max(j.Total, 1), 100))/100)/len(vm.Spec.Disks)
			return pct, fmt.Sprintf("copying disk %s (%d of %d): %s of %s", d.Name, i+1, len(vm.Spec.Disks), api.Size(j.Done), api.Size(j.Total))
		})
		if err != nil {
			return copier, copied, fmt.Errorf("copy disk %s: %w", d.Name, err)
		}
		res.CopiedBytes += api.Size(done.Total)
	}
	return copier, copied, nil
}

func (s *Server) reachesAll(h *api.Host, dss []string) bool {
	if h.Status.Connection != api.HostConnected {
		return false
	}
	for _, id := range dss {
		if !slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == id }) {
			return false
		}
	}
	return true
}

// POST /api/v1/vms/{name}/mark-template: the VM becomes a template, only
// cloned from. POST .../unmark-template turns it back.
func (s *Server) markTemplate(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op := opMarkTemplate
		if !on {
			op = opUnmarkTemplate
		}
		t, err := s.modify(r, api.KindVM, func(o api.Object) error {
			vm := o.(*api.VM)
			if err := inventory.CheckReady(vm); err != nil {
				return err
			}
			switch {
			case vm.Spec.Template == on:
				return api.Errorf(api.ErrConflict, "vm %s is %s a template", vm.Metadata.Name, map[bool]string{true: "already", false: "not"}[on])
			case on && vm.Status.PowerState != api.PowerOff:
				return api.Errorf(api.ErrConflict, "vm %s is %s: power it off to make it a template", vm.Metadata.Name, vm.Status.PowerState)
			case on && slices.ContainsFunc(vm.Spec.Snapshots, func(sn api.VMSnapshot) bool { return !sn.Hidden }):
				return api.Errorf(api.ErrConflict, "vm %s has snapshots: delete them to make it a template", vm.Metadata.Name)
			case !on:
				if deps := s.vmDependents(vm); len(deps) > 0 {
					return api.Errorf(api.ErrConflict, "linked clones depend on template %s: %v", vm.Metadata.Name, inventory.FirstN(deps, 10))
				}
			}
			vm.Spec.Template = on
			return nil
		}, func(upd api.Object) *api.Task { return tasks.Done(tasks.New(r.Context(), op, upd, nil), nil) })
		if err != nil {
			fail(w, err)
			return
		}
		replyTask(w, t)
	}
}

// GET /api/v1/templates
func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	v := &viewer{s: s}
	var items []api.Object
	s.cache.Each(api.KindVM, func(o api.Object) {
		if o.(*api.VM).Spec.Template {
			items = append(items, v.view(o))
		}
	})
	inventory.SortByName(items)
	reply(w, http.StatusOK, api.List[api.Object]{Items: nonNil(items), Revision: s.cache.Rev()})
}

// createFromTemplate serves POST /api/v1/vms with fromTemplate: a clone of
// the template, under the request's name.
func (s *Server) createFromTemplate(w http.ResponseWriter, r *http.Request, req api.VMCreateRequest) {
	switch {
	case len(req.Disks) > 0 || req.Image != "" || req.CDROM != "" || req.NICs != nil:
		fail(w, api.Errorf(api.ErrInvalid, "a VM made from a template takes its disks, image and NICs from it: drop disks, image, cdrom and nics"))
		return
	case req.Cluster != "":
		fail(w, api.Errorf(api.ErrInvalid, "a VM made from a template goes in the template's cluster (or the host's): drop cluster"))
		return
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	o, err := s.inv.Lookup(api.KindVM, req.FromTemplate)
	if err == nil && !o.(*api.VM).Spec.Template {
		err = api.Errorf(api.ErrInvalid, "vm %s is not a template (vdc vm mark-template %s)", req.FromTemplate, req.FromTemplate)
	}
	if err != nil {
		fail(w, err)
		return
	}
	r.SetPathValue("name", o.GetMeta().ID)
	body := api.CloneRequest{Name: req.Name, Linked: req.Linked, Host: req.Host, CPUs: req.CPUs, Memory: req.Memory, PowerOn: req.PowerOn,
		CloudInit: req.CloudInit, Labels: req.Labels, Description: req.Description}
	s.cloneWith(w, r, body)
}
