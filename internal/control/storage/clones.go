package storage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
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

// clonePlan is a clone as planned: the new VM, its task's parameters, and
// the cluster and host (if the request names one) to place it in.
type clonePlan struct {
	vm     *api.VM
	params cloneParams
	cl     *api.Cluster
	hostID string
}

// ValidateClone checks a clone request's own fields.
func ValidateClone(req api.CloneRequest) error {
	err := inventory.FirstErr(inventory.ValidateCommon("vm", req.Name, req.Labels, req.Description), ValidateCloudInit(req.CloudInit))
	if err == nil && (req.CPUs != 0 || req.Memory != 0) {
		err = inventory.ValidateVMShape(max(req.CPUs, 1), max(req.Memory, api.MinVMMemory))
	}
	return err
}

// Clone plans the clone of src a request asks for, places it and queues
// its task, with the new VM recorded (phase creating) in the same
// transaction.
func (s *Service) Clone(ctx context.Context, src *api.VM, req api.CloneRequest) (*api.Task, error) {
	pl, err := s.planClone(src, req)
	if err != nil {
		return nil, fmt.Errorf("clone vm %s: %w", src.Metadata.Name, err)
	}
	txn := s.st.Store.Txn()
	s.inv.KeepFolder(txn, pl.vm.Spec.Folder.ID)
	release, err := s.places.PlaceNew(txn, pl.vm, pl.cl, pl.hostID, req.PowerOn)
	if err != nil {
		return nil, fmt.Errorf("place clone %s of vm %s: %w", req.Name, src.Metadata.Name, err)
	}
	defer release()
	if pl.params.Linked {
		// The new host must reach the bases too.
		if err := s.reachesFiles(pl.vm.Spec.Host.ID, src); err != nil {
			return nil, fmt.Errorf("clone vm %s: %w", src.Metadata.Name, err)
		}
	}
	return s.tasks.Submit(ctx, txn, tasks.New(ctx, api.OpVMClone, src, pl.params))
}

// reachesFiles checks that a host reaches the datastores of a VM's disks.
func (s *Service) reachesFiles(hostID string, src *api.VM) error {
	h, ok := state.Get[*api.Host](s.st, hostID)
	if !ok {
		return api.Errorf(api.ErrConflict, "host %s is gone", hostID)
	}
	for _, d := range src.Spec.Disks {
		if !slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == d.Datastore.ID }) {
			return api.Errorf(api.ErrConflict, "host %s does not reach the datastore of %s's disk %s, which a linked clone reads", h.Metadata.Name, src.Metadata.Name, d.Name)
		}
	}
	return nil
}

// planClone builds the new VM from the source (or one of its snapshots).
func (s *Service) planClone(src *api.VM, req api.CloneRequest) (*clonePlan, error) {
	pl := &clonePlan{params: cloneParams{Linked: req.Linked, PowerOn: req.PowerOn, Sources: map[string]string{}}}
	if err := inventory.CheckReady(src); err != nil {
		return nil, err
	}
	if err := s.inv.VMNameFree(req.Name, nil); err != nil {
		return nil, err
	}
	disks, cpus, mem := src.Spec.Disks, src.Spec.CPUs, src.Spec.MemoryBytes
	if req.Snapshot != "" {
		sn, err := FindSnapshot(src, req.Snapshot)
		if err != nil {
			return nil, err
		}
		disks, cpus, mem = sn.Disks, sn.CPUs, sn.MemoryBytes
		pl.params.Snapshot = sn.ID
	} else if req.Linked && !src.Spec.Template {
		return nil, api.Errorf(api.ErrInvalid, "a linked clone needs frozen disks to link to: give a snapshot of vm %s (--snapshot), or mark it a template", src.Metadata.Name)
	}
	if !req.Linked && req.Snapshot == "" && src.Status.PowerState == api.PowerUnknown {
		return nil, api.Errorf(api.ErrConflict, "the state of vm %s is unknown: %s", src.Metadata.Name, src.Status.Message)
	}
	if req.CPUs > 0 {
		cpus = req.CPUs
	}
	if req.Memory > 0 {
		mem = req.Memory
	}
	var ds *api.Datastore
	var err error
	if pl.cl, pl.hostID, ds, err = s.cloneTarget(src, req); err != nil {
		return nil, err
	}
	pl.vm = newClone(src, req, pl.cl, cpus, mem)
	if req.Folder != "" {
		f, err := s.inv.FolderDest(req.Folder, pl.cl.Spec.Datacenter.ID)
		if err != nil {
			return nil, err
		}
		pl.vm.Spec.Folder = inventory.FolderRef(f)
	}
	if err := s.cloneDisks(pl, src, disks, ds, req.Linked); err != nil {
		return nil, err
	}
	used := map[string]bool{}
	for _, n := range src.Spec.NICs {
		mac := s.inv.NewMAC(used)
		used[mac] = true
		n.MAC, n.IPv4 = mac, ""
		if pg, ok := state.Get[*api.PortGroup](s.st, n.PortGroup.ID); ok {
			if n.IPv4, err = s.inv.NICAddress(pg, used); err != nil {
				return nil, fmt.Errorf("clone %s: %s: %w", src.Metadata.Name, n.Name, err)
			}
			used[n.IPv4] = true
		}
		pl.vm.Spec.NICs = append(pl.vm.Spec.NICs, n)
	}
	pl.params.VM = pl.vm.Metadata.ID
	return pl, nil
}

// cloneTarget is where a clone goes: the source's cluster, or the
// cluster of the host the request names (in the same datacenter), and
// the datastore the request names, whose host it must be on when local.
func (s *Service) cloneTarget(src *api.VM, req api.CloneRequest) (cl *api.Cluster, hostID string, ds *api.Datastore, err error) {
	cl, ok := state.Get[*api.Cluster](s.st, src.Spec.Cluster.ID)
	if !ok {
		return nil, "", nil, api.Errorf(api.ErrConflict, "vm %s is in no cluster", src.Metadata.Name)
	}
	if req.Host != "" {
		ho, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return nil, "", nil, err
		}
		h := ho.(*api.Host)
		hostID = h.Metadata.ID
		if h.Spec.Cluster.ID != cl.Metadata.ID {
			hc, ok := state.Get[*api.Cluster](s.st, h.Spec.Cluster.ID)
			if !ok || inventory.DatacenterOf(hc) != inventory.DatacenterOf(cl) {
				return nil, "", nil, api.Errorf(api.ErrConflict, "host %s is in another datacenter", req.Host)
			}
			cl = hc
		}
	}
	if req.Datastore == "" {
		return cl, hostID, nil, nil
	}
	o, err := s.inv.Lookup(api.KindDatastore, req.Datastore)
	if err != nil {
		return nil, "", nil, err
	}
	ds = o.(*api.Datastore)
	if inventory.DatacenterOf(ds) != inventory.DatacenterOf(cl) {
		return nil, "", nil, api.Errorf(api.ErrConflict, "datastore %s is in another datacenter", ds.Metadata.Name)
	}
	if !ds.Spec.Shared {
		if hostID == "" {
			hostID = ds.Spec.Host.ID
		} else if hostID != ds.Spec.Host.ID {
			return nil, "", nil, api.Errorf(api.ErrInvalid, "datastore %s is local to another host", ds.Metadata.Name)
		}
	}
	return cl, hostID, ds, nil
}

// newClone is the new VM, without disks and NICs yet, in its source's
// folder.
func newClone(src *api.VM, req api.CloneRequest, cl *api.Cluster, cpus int, mem api.Size) *api.VM {
	// A clone keeps its source's labels; the request's add to them or
	// change them.
	labels := maps.Clone(src.Metadata.Labels)
	if len(req.Labels) > 0 && labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, req.Labels)
	vm := &api.VM{
		Metadata: api.ObjectMeta{ID: store.NewID(), Name: req.Name, Labels: labels},
		Spec: api.VMSpec{Cluster: api.Ref{ID: cl.Metadata.ID}, Folder: src.Spec.Folder, CPUs: cpus, MemoryBytes: mem, Description: req.Description,
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
	return vm
}

// cloneDisks gives the clone its disks, in its own folder (on ds when the
// request names one): linked to the source's files, or full copies of
// them, for which the datastore must have room.
func (s *Service) cloneDisks(pl *clonePlan, src *api.VM, disks []api.VMDisk, ds *api.Datastore, linked bool) error {
	id := pl.vm.Metadata.ID
	dir := fmt.Sprintf("%s-%s", pl.vm.Metadata.Name, id[len(id)-8:])
	var need api.Size
	for _, d := range disks {
		f, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return err
		}
		nd := api.VMDisk{Name: d.Name, SizeBytes: d.SizeBytes, Datastore: d.Datastore, Bus: d.Bus, Path: path.Join(dir, d.Name+".qcow2"), Slot: d.Slot}
		if ds != nil {
			nd.Datastore = api.Ref{ID: ds.Metadata.ID}
		}
		if linked {
			nd.Source, nd.Linked = f, true
		} else {
			need += allocatedOf(src, d.Name)
		}
		pl.params.Sources[d.Name] = f
		pl.vm.Spec.Disks = append(pl.vm.Spec.Disks, nd)
	}
	if !linked && len(pl.vm.Spec.Disks) > 0 {
		return s.checkFree(pl.vm.Spec.Disks[0].Datastore.ID, need, "a full copy of the disks of vm "+src.Metadata.Name)
	}
	return nil
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

func (s *Service) runClone(ctx context.Context, t *tasks.Run) (any, error) {
	var p cloneParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	start := time.Now()
	vm, err := state.Read[*api.VM](ctx, s.st, p.VM)
	if err != nil {
		if errors.Is(err, api.ErrNotFound) && t.Resumed {
			return nil, api.Errorf(api.ErrConflict, "the clone was undone when the server restarted")
		}
		return nil, err
	}
	res := api.CloneResult{VM: api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name}, Linked: p.Linked}
	if vm.Status.Phase != api.PhaseCreating {
		return res, nil // done before the server restarted
	}
	src, err := state.Read[*api.VM](ctx, s.st, t.Task.Target.ID)
	if err != nil {
		return nil, s.undoClone(ctx, vm, nil, nil, fmt.Errorf("the source vm: %w", err))
	}
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
	st, err := s.hosts.Define(ctx, hosts.TargetOf(h), cfg)
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
			_, _ = s.submit(ctx, tasks.New(ctx, api.OpVMPower(api.ActionStart), vm, api.PowerRequest{Action: api.ActionStart}))
		})
	}
	return res, nil
}

// undoClone removes what a failed clone made.
func (s *Service) undoClone(ctx context.Context, vm *api.VM, copier *api.Host, copied []string, cause error) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if copier != nil && len(copied) > 0 {
		_ = s.hosts.RemoveFiles(cctx, hosts.TargetOf(copier), copied)
	}
	if h, err := s.inv.VMHost(vm); err == nil {
		_ = s.hosts.Undefine(cctx, hosts.TargetOf(h), vm.Metadata.ID, true)
	}
	if err := s.inv.RemoveVM(cctx, vm); err != nil {
		s.log.Error("cannot remove the VM of a failed clone", "vm", vm.Metadata.Name, "err", err)
	}
	return fmt.Errorf("clone %s: %w; nothing of it is left", vm.Metadata.Name, cause)
}

// copier picks the host that makes a clone's full copies: one that
// reaches both ends; the source's own host when it copies a running VM's
// disks (a point-in-time copy while the guest runs).
func (s *Service) copier(src, vm *api.VM, p cloneParams, live bool) (*api.Host, error) {
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
			return nil, err
		}
		copier = h
	} else {
		for _, id := range []string{vm.Spec.Host.ID, src.Spec.Host.ID} {
			if h, ok := state.Get[*api.Host](s.st, id); ok && reachesAll(h, dss) {
				copier = h
				break
			}
		}
		if copier == nil {
			state.Each(s.st, func(h *api.Host) {
				if copier == nil && reachesAll(h, dss) {
					copier = h
				}
			})
		}
	}
	if copier == nil || !reachesAll(copier, dss) {
		return nil, api.Errorf(api.ErrConflict, "no connected host reaches both the source disks and the clone's datastore")
	}
	return copier, nil
}

// copyDisks makes the full copies, one disk after the other, on the
// copier; it returns the files made so far, for an undo.
func (s *Service) copyDisks(ctx context.Context, t *tasks.Run, src, vm *api.VM, p cloneParams, res *api.CloneResult) (*api.Host, []string, error) {
	live := p.Snapshot == "" && src.Status.PowerState != api.PowerOff
	copier, err := s.copier(src, vm, p, live)
	if err != nil {
		return nil, nil, err
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
		job, err := s.hosts.CopyDisk(ctx, hosts.TargetOf(copier), c)
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

func reachesAll(h *api.Host, dss []string) bool {
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
