package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/ovf"
	"github.com/vdc-project/vdc/internal/store"
)

const (
	// importLabel marks the VMs an import task makes, so that a new leader
	// can find and remove those of an import its predecessor left.
	importLabel = "vdc.import-task"
)

func (s *Server) registerTransferTasks(r *tasks.Runner) {
	r.Register(api.OpVMImport, tasks.Handler{Run: s.runVMImport, Resumable: true, Cancelable: true,
		CanceledQueued: func(ctx context.Context, t *tasks.Run) {
			var p importParams
			if t.Params(&p) == nil {
				s.dropStaging(ctx, p)
			}
		}})
	r.Register(api.OpVMExport, tasks.Handler{Run: s.runVMExport, Resumable: true, Cancelable: true})
}

// planDisk plans a disk import: a new disk for an existing VM that is off,
// or a new VM with the disk.
func (s *Server) planDisk(p *importParams, sp *agent.StagedPackage) (*importPlan, error) {
	req := p.Req
	file := req.File
	if file == "" && sp != nil && len(sp.Package.Order) > 0 {
		if len(sp.Package.Order) > 1 {
			return nil, api.Errorf(api.ErrInvalid, "the upload holds %d files (%s): say which is the disk", len(sp.Package.Order), strings.Join(sp.Package.Order, ", "))
		}
		file = sp.Package.Order[0]
	}
	if file == "" && req.URL != "" {
		u := strings.TrimRight(req.URL, "/")
		file = path.Base(u[strings.Index(u, "://")+3:])
	}
	src := diskSource{Files: []string{file}}
	ip := &importPlan{pkg: sp, api: api.ImportPlan{Format: api.ImportFormatDisk}}
	if o, ok := s.cache.Lookup(api.KindVM, req.VM); ok && req.VM != "" {
		vm := o.(*api.VM)
		if err := s.attachReady(vm, p.Disk); err != nil {
			return nil, err
		}
		ip.attach, ip.disk = vm, p.Disk
		if ip.disk == "" { // a dry run, or a task queued by an earlier version
			ip.disk = s.nextDiskName(vm)
		}
		bus := req.Bus
		if bus == "" {
			bus = api.BusVirtio
		}
		ip.vms = []plannedVM{{req: api.VMCreateRequest{Name: vm.Metadata.Name, Disks: []api.DiskRequest{{Datastore: req.Datastore, Bus: bus}}}, sources: []diskSource{src}}}
		// What it does is the plan, not a warning: the result says it again.
		ip.api.VMs = []api.ImportVM{{Name: vm.Metadata.Name, CPUs: vm.Spec.CPUs, Memory: vm.Spec.MemoryBytes, Existing: true,
			Disks: []api.ImportDisk{{Name: ip.disk, Bus: bus, File: file}}}}
		return ip, nil
	}
	name := req.Name
	if name == "" {
		name = req.VM
	}
	cpus, mem := max(req.CPUs, 1), req.Memory
	if mem == 0 {
		mem = api.Size(1 << 30)
	}
	cr := api.VMCreateRequest{Name: name, Cluster: req.Cluster, Host: req.Host, CPUs: cpus, Memory: mem, Labels: req.Labels,
		Disks: []api.DiskRequest{{Size: api.MinVMMemory, Datastore: req.Datastore, Bus: req.Bus}}}
	if err := s.vms.ValidateCreate(&cr); err != nil {
		return nil, err
	}
	ip.vms = []plannedVM{{req: cr, sources: []diskSource{src}}}
	bus := req.Bus
	if bus == "" {
		bus = api.BusVirtio
	}
	ip.api.VMs = []api.ImportVM{{Name: name, CPUs: cpus, Memory: mem, Disks: []api.ImportDisk{{Bus: bus, File: file}}}}
	return ip, nil
}

// attachReady checks that a disk import can add a disk to a VM; own is
// the disk name the import claimed, if it did.
func (s *Server) attachReady(vm *api.VM, own string) error {
	if err := inventory.CheckReady(vm); err != nil {
		return err
	}
	if vm.Status.PowerState != api.PowerOff {
		return api.Errorf(api.ErrConflict, "vm %s is %s: add disks while it is off", vm.Metadata.Name, vm.Status.PowerState)
	}
	pending := s.inv.PendingClaims(inventory.VMClaim(vm.Metadata.ID, "disks", ""))
	delete(pending, inventory.VMClaim(vm.Metadata.ID, "disks", own))
	if n := len(vm.Spec.Disks) + len(pending); n >= api.MaxDisksPerVM {
		return api.Errorf(api.ErrConflict, "vm %s has %d disks already (some being added), the most a VM can have", vm.Metadata.Name, n)
	}
	return nil
}

// runVMImport makes the VMs of an import: fetch the package (from a URL),
// check it, make each VM's record and disks, give it its properties, and
// define it on its host. Whatever fails undoes all of it, and the staging
// folder goes in every case.
func (s *Server) runVMImport(ctx context.Context, t *tasks.Run) (any, error) {
	var p importParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	cctx, ccancel := t.CleanupCtx()
	defer ccancel()
	if t.Resumed {
		// A previous leader died during the import: remove what it made.
		removed := s.undoImport(cctx, t.Task.Metadata.ID)
		s.dropStaging(cctx, p)
		return nil, fmt.Errorf("interrupted: the management server stopped during the import; %s; run the import again", removed)
	}
	defer s.dropStaging(cctx, p)
	dsObj, h, err := s.stagingHost(p.Staging)
	if err != nil {
		return nil, err
	}
	ds := dsObj.Metadata.ID
	var sp *agent.StagedPackage
	if p.Req.URL != "" {
		t.Progress(ctx, 1, "downloading "+p.Req.URL)
		sp, err = s.agents.StagingFetch(ctx, hosts.TargetOf(h), ds, p.Staging, agent.FetchRequest{URL: p.Req.URL}, func(f float64, msg string) {
			t.Progress(ctx, 1+int(f*29), msg)
		})
	} else {
		sp, err = s.agents.StagingIndex(ctx, hosts.TargetOf(h), ds, p.Staging)
	}
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	plan, err := s.planFrom(&p, sp, false)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	if err := s.checkNames(plan, t.Task); err != nil {
		return nil, err
	}
	undo := true
	defer func() {
		if undo {
			s.undoImport(cctx, t.Task.Metadata.ID)
		}
	}()
	res := api.ImportResult{Warnings: plan.api.Warnings}
	if plan.attach != nil {
		ref, diskName, err := s.attachImportedDisk(ctx, t, p, plan, sp)
		if err != nil {
			return nil, err
		}
		undo = false
		res.VMs, res.Disk = []api.Ref{ref}, diskName
		return res, nil
	}
	type made struct {
		vm *api.VM
		h  *api.Host
	}
	var vms []made
	for i, pv := range plan.vms {
		vm, vh, err := s.createImportedVM(ctx, t, pv, i == 0)
		if err != nil {
			return nil, fmt.Errorf("import vm %s: %w", pv.req.Name, err)
		}
		vms = append(vms, made{vm, vh})
		lo, hi := 30+60*i/len(plan.vms), 30+60*(i+1)/len(plan.vms)
		if err := s.fillImportedDisks(ctx, t, vm, vh, pv, sp, p, lo, hi); err != nil {
			return nil, fmt.Errorf("import vm %s: %w", vm.Metadata.Name, err)
		}
		if err := s.vms.Define(ctx, t, vm, vh); err != nil {
			return nil, fmt.Errorf("import vm %s: define it on host %s: %w", vm.Metadata.Name, vh.Metadata.Name, err)
		}
		res.VMs = append(res.VMs, api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name})
	}
	undo = false
	if p.Req.PowerOn {
		for _, m := range vms {
			t.Progress(ctx, 95, "powering on "+m.vm.Metadata.Name)
			if _, err := s.vms.PowerOn(ctx, t, m.vm.Metadata.ID); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("vm %s was imported but did not power on: %v", m.vm.Metadata.Name, err))
			}
		}
	}
	return res, nil
}

// createImportedVM records a VM of the import (phase creating), placed on
// a host with room.
func (s *Server) createImportedVM(ctx context.Context, t *tasks.Run, pv plannedVM, first bool) (*api.VM, *api.Host, error) {
	req := pv.req
	labels := map[string]string{}
	for k, v := range req.Labels {
		labels[k] = v
	}
	labels[importLabel] = t.Task.Metadata.ID
	req.Labels = labels
	if err := s.cache.Sync(ctx); err != nil {
		return nil, nil, err
	}
	vm, cl, hostID, err := s.vms.Build(&req)
	if err != nil {
		return nil, nil, err
	}
	if first {
		vm.Metadata.ID = t.Task.Target.ID
	}
	if len(pv.props) > 0 && len(vm.Spec.Disks) > 0 {
		o, _ := s.cache.Get(api.KindDatastore, vm.Spec.Disks[0].Datastore.ID)
		vm.Spec.CDROM = filepath.Join(o.(*api.Datastore).Spec.Path, path.Dir(vm.Spec.Disks[0].Path), "ovf-env.iso")
	}
	txn := s.store.Txn()
	if slices.Contains(t.Task.Claims, store.NameClaim(api.KindVM, vm.Metadata.Name)) {
		txn.Holds(api.KindVM, vm.Metadata.Name, t.Task.Metadata.ID)
	}
	release, err := s.places.PlaceNew(txn, vm, cl, hostID, false)
	if err != nil {
		return nil, nil, fmt.Errorf("place it in cluster %s: %w", cl.Metadata.Name, err)
	}
	defer release()
	chosen := vm.Spec.Host.ID
	// A cancel must not cut a commit short: the VM could be made after
	// the undo looked for it. The commit finishes; the cancel is seen next.
	cctx, cancel := t.CleanupCtx()
	rev, err := txn.Commit(cctx)
	if err == nil {
		err = s.cache.WaitRev(cctx, rev)
	}
	cancel()
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	ho, ok := s.cache.Get(api.KindHost, chosen)
	if !ok {
		return nil, nil, api.Errorf(api.ErrConflict, "host %s left the inventory", chosen)
	}
	return vm, ho.(*api.Host), nil
}

// resolveSources fills in the chunk names of chunked files.
func resolveSources(src diskSource, sp *agent.StagedPackage) []string {
	if len(src.Files) != 1 || !strings.HasSuffix(src.Files[0], "#chunks") {
		return src.Files
	}
	href := strings.TrimSuffix(src.Files[0], "#chunks")
	var out []string
	for i := 0; ; i++ {
		n := ovf.ChunkName(href, i)
		if sp.Package.Files[n] == nil {
			return out
		}
		out = append(out, n)
	}
}

// fillImportedDisks converts the package's disks into the VM's disk files
// (blank disks are made at define) and writes its OVF environment ISO.
func (s *Server) fillImportedDisks(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, pv plannedVM, sp *agent.StagedPackage, p importParams, lo, hi int) error {
	var req agent.ConvertRequest
	for i, src := range pv.sources {
		if len(src.Files) == 0 {
			continue
		}
		d := vm.Spec.Disks[i]
		req.Disks = append(req.Disks, agent.ConvertDisk{Files: resolveSources(src, sp), Gzip: src.Gzip, CapacityBytes: src.Capacity,
			Datastore: d.Datastore.ID, Path: d.Path})
	}
	if len(req.Disks) > 0 {
		t.Progress(ctx, lo, fmt.Sprintf("vm %s: converting %d disks on host %s", vm.Metadata.Name, len(req.Disks), h.Metadata.Name))
		_, err := s.agents.StagingConvert(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, req, func(f float64, msg string) {
			t.Progress(ctx, lo+int(f*float64(hi-lo)), "vm "+vm.Metadata.Name+": "+msg)
		})
		if err != nil {
			return err
		}
	}
	if vm.Spec.CDROM != "" {
		var b bytes.Buffer
		err := disk.WriteISO(&b, "OVF ENV", map[string][]byte{
			"OVF_ENV.XML": ovf.Environment(pv.ovfID, pv.props),
			"PROPS.ENV":   ovf.PropertiesEnv(pv.props),
		})
		if err != nil {
			return err
		}
		d := vm.Spec.Disks[0]
		rel := path.Join(path.Dir(d.Path), "ovf-env.iso")
		if _, err := s.agents.PutFile(ctx, hosts.TargetOf(h), d.Datastore.ID, rel, &b, int64(b.Len()), false); err != nil {
			return fmt.Errorf("write the OVF environment ISO: %w", err)
		}
	}
	return nil
}

// attachImportedDisk converts a disk into a new disk of a VM that is off.
func (s *Server) attachImportedDisk(ctx context.Context, t *tasks.Run, p importParams, plan *importPlan, sp *agent.StagedPackage) (ref api.Ref, diskName string, err error) {
	ref, err = s.attachDisk(ctx, t, p, plan)
	return ref, plan.disk, err
}

func (s *Server) attachDisk(ctx context.Context, t *tasks.Run, p importParams, plan *importPlan) (api.Ref, error) {
	vm := plan.attach
	ref := api.Ref{ID: vm.Metadata.ID, Name: vm.Metadata.Name}
	h, err := s.inv.VMHost(vm)
	if err != nil {
		return ref, err
	}
	dsName := plan.vms[0].req.Disks[0].Datastore
	if dsName == "" && len(vm.Spec.Disks) > 0 {
		dsName = vm.Spec.Disks[0].Datastore.ID
	}
	dso, err := s.inv.Pick(api.KindDatastore, dsName, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
	if err != nil {
		return ref, err
	}
	nd := api.VMDisk{Name: plan.disk, Datastore: api.Ref{ID: dso.GetMeta().ID}, Bus: plan.vms[0].req.Disks[0].Bus,
		Path: fmt.Sprintf("%s/%s-%s.qcow2", inventory.VMDir(vm), plan.disk, t.Task.Metadata.ID[len(t.Task.Metadata.ID)-6:])}
	t.Progress(ctx, 30, fmt.Sprintf("converting the disk on host %s", h.Metadata.Name))
	conv, err := s.agents.StagingConvert(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, agent.ConvertRequest{Disks: []agent.ConvertDisk{{
		Files: plan.vms[0].sources[0].Files, Datastore: nd.Datastore.ID, Path: nd.Path}}}, func(f float64, msg string) {
		t.Progress(ctx, 30+int(f*60), msg)
	})
	if err != nil {
		return ref, fmt.Errorf("import a disk for vm %s: %w", vm.Metadata.Name, err)
	}
	nd.SizeBytes = api.Size(conv[0].VirtualBytes)
	removeFile := func() {
		_ = s.agents.DeleteFile(context.WithoutCancel(ctx), hosts.TargetOf(h), nd.Datastore.ID, nd.Path)
	}
	err = state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		if v.Status.PowerState != api.PowerOff || v.Status.Phase != api.PhaseReady {
			return api.Errorf(api.ErrConflict, "vm %s changed state (%s, %s) during the import", v.Metadata.Name, v.Status.Phase, v.Status.PowerState)
		}
		if slices.ContainsFunc(inventory.VMFiles(v), func(d api.VMDisk) bool { return d.Name == nd.Name }) || len(v.Spec.Disks) >= api.MaxDisksPerVM {
			return api.Errorf(api.ErrConflict, "vm %s's disks changed during the import (it has %d, or one named %s)", v.Metadata.Name, len(v.Spec.Disks), nd.Name)
		}
		v.Spec.Disks = append(v.Spec.Disks, nd)
		return nil
	})
	if err != nil {
		removeFile()
		return ref, err
	}
	o, err := s.store.Get(ctx, api.KindVM, vm.Metadata.ID)
	if err == nil {
		var cfg = o.(*api.VM)
		c, cerr := s.inv.VMConfig(cfg)
		if cerr == nil {
			_, err = s.agents.Define(ctx, hosts.TargetOf(h), c)
		} else {
			err = cerr
		}
	}
	if err != nil {
		// Take the disk back out: the VM stays as it was.
		_ = state.UpdateKind(context.WithoutCancel(ctx), s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
			v := o.(*api.VM)
			v.Spec.Disks = slices.DeleteFunc(v.Spec.Disks, func(d api.VMDisk) bool { return d.Name == nd.Name })
			return nil
		})
		removeFile()
		return ref, fmt.Errorf("add the disk to vm %s: %w", vm.Metadata.Name, err)
	}
	return ref, nil
}

// undoImport removes the VMs an import task made, with their files, and
// says what it removed.
func (s *Server) undoImport(ctx context.Context, taskID string) string {
	_ = s.cache.Sync(ctx)
	var vms []*api.VM
	s.cache.Each(api.KindVM, func(o api.Object) {
		if vm := o.(*api.VM); vm.Metadata.Labels[importLabel] == taskID && vm.Status.Phase == api.PhaseCreating {
			vms = append(vms, vm)
		}
	})
	if len(vms) == 0 {
		return "no VM had been made yet"
	}
	var names []string
	for _, vm := range vms {
		names = append(names, vm.Metadata.Name)
		if h, err := s.inv.VMHost(vm); err == nil {
			if err := s.agents.Undefine(ctx, hosts.TargetOf(h), vm.Metadata.ID, true); err != nil && !errors.Is(err, api.ErrNotFound) {
				s.log.Warn("cannot undefine an imported VM", "vm", vm.Metadata.Name, "err", err)
			}
			if len(vm.Spec.Disks) > 0 {
				d := vm.Spec.Disks[0]
				if err := s.agents.DeleteFile(ctx, hosts.TargetOf(h), d.Datastore.ID, path.Dir(d.Path)); err != nil {
					s.log.Warn("cannot remove the files of an imported VM", "vm", vm.Metadata.Name, "err", err)
				}
			}
		}
		if err := s.inv.RemoveVM(ctx, vm); err != nil {
			s.log.Error("cannot remove a VM of a failed import", "vm", vm.Metadata.Name, "err", err)
		}
	}
	sort.Strings(names)
	return "the VMs it had begun (" + strings.Join(names, ", ") + ") were removed"
}

// dropStaging removes an import's staging folder.
func (s *Server) dropStaging(ctx context.Context, p importParams) {
	if _, h, err := s.stagingHost(p.Staging); err == nil {
		if err := s.agents.StagingDelete(ctx, hosts.TargetOf(h), p.Datastore, p.Staging); err != nil {
			s.log.Warn("cannot remove a staging folder", "staging", p.Staging, "err", err)
		}
	}
}
