package transfer

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
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/ovf"
	"github.com/vdc-project/vdc/internal/store"
)

// importLabel marks the VMs an import task makes (its value is the task's
// ID), so that a new leader can find and remove those of an import its
// predecessor left.
const importLabel = "vdc.import-task"

// runVMImport makes the VMs of an import: fetch the package (from a URL),
// check it, make each VM's record and disks, give it its properties, and
// define it on its host. Whatever fails undoes all of it, and the staging
// folder goes in every case.
func (s *Service) runVMImport(ctx context.Context, t *tasks.Run) (any, error) {
	var p importParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	cctx, ccancel := t.CleanupCtx()
	defer ccancel()
	if t.Resumed {
		// A previous leader died during the import: remove what it made.
		removed := s.undoImport(cctx, t.Task.Metadata.ID)
		s.dropStaging(cctx, p.Staging, p.Datastore)
		return nil, fmt.Errorf("interrupted: the management server stopped during the import; %s; run the import again", removed)
	}
	defer s.dropStaging(cctx, p.Staging, p.Datastore)
	ds, h, err := s.stagingHost(p.Staging)
	if err != nil {
		return nil, err
	}
	sp, err := s.stageForTask(ctx, t, p, ds.Metadata.ID, h)
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
		ref, err := s.attachDisk(ctx, t, p, plan)
		if err != nil {
			return nil, err
		}
		undo = false
		res.VMs, res.Disk = []api.Ref{ref}, plan.disk
		return res, nil
	}
	made, err := s.makeImportedVMs(ctx, t, p, plan, sp)
	if err != nil {
		return nil, err
	}
	undo = false
	for _, m := range made {
		res.VMs = append(res.VMs, api.Ref{ID: m.vm.Metadata.ID, Name: m.vm.Metadata.Name})
	}
	if p.Req.PowerOn {
		for _, m := range made {
			t.Progress(ctx, 95, "powering on "+m.vm.Metadata.Name)
			if _, err := s.vms.PowerOn(ctx, t, m.vm.Metadata.ID); err != nil {
				res.Warnings = append(res.Warnings, fmt.Sprintf("vm %s was imported but did not power on: %v", m.vm.Metadata.Name, err))
			}
		}
	}
	return res, nil
}

// stageForTask has host h fetch the package from its URL into the staging
// folder on datastore ds, or index the upload there.
func (s *Service) stageForTask(ctx context.Context, t *tasks.Run, p importParams, ds string, h *api.Host) (*agent.StagedPackage, error) {
	if p.Req.URL == "" {
		return s.hosts.StagingIndex(ctx, hosts.TargetOf(h), ds, p.Staging)
	}
	t.Progress(ctx, 1, "downloading "+p.Req.URL)
	return s.hosts.StagingFetch(ctx, hosts.TargetOf(h), ds, p.Staging, agent.FetchRequest{URL: p.Req.URL}, func(f float64, msg string) {
		t.Progress(ctx, 1+int(f*29), msg)
	})
}

// madeVM is a VM an import made, and its host.
type madeVM struct {
	vm *api.VM
	h  *api.Host
}

// makeImportedVMs makes each VM of the plan: its record, its disks and
// properties, its definition on its host.
func (s *Service) makeImportedVMs(ctx context.Context, t *tasks.Run, p importParams, plan *importPlan, sp *agent.StagedPackage) ([]madeVM, error) {
	var made []madeVM
	for i, pv := range plan.vms {
		vm, vh, err := s.createImportedVM(ctx, t, pv, i == 0)
		if err != nil {
			return nil, fmt.Errorf("import vm %s: %w", pv.req.Name, err)
		}
		made = append(made, madeVM{vm, vh})
		lo, hi := 30+60*i/len(plan.vms), 30+60*(i+1)/len(plan.vms)
		if err := s.fillImportedDisks(ctx, t, vm, vh, pv, sp, p, lo, hi); err != nil {
			return nil, fmt.Errorf("import vm %s: %w", vm.Metadata.Name, err)
		}
		if err := s.vms.Define(ctx, t, vm, vh); err != nil {
			return nil, fmt.Errorf("import vm %s: define it on host %s: %w", vm.Metadata.Name, vh.Metadata.Name, err)
		}
	}
	return made, nil
}

// createImportedVM records a VM of the import (phase creating), placed on
// a host with room.
func (s *Service) createImportedVM(ctx context.Context, t *tasks.Run, pv plannedVM, first bool) (*api.VM, *api.Host, error) {
	req := pv.req
	labels := map[string]string{}
	for k, v := range req.Labels {
		labels[k] = v
	}
	labels[importLabel] = t.Task.Metadata.ID
	req.Labels = labels
	if err := s.st.Cache.Sync(ctx); err != nil {
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
		ds, _ := state.Get[*api.Datastore](s.st, vm.Spec.Disks[0].Datastore.ID)
		vm.Spec.CDROM = filepath.Join(ds.Spec.Path, path.Dir(vm.Spec.Disks[0].Path), "ovf-env.iso")
	}
	txn := s.st.Store.Txn()
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
		err = s.st.Cache.WaitRev(cctx, rev)
	}
	cancel()
	if err != nil {
		return nil, nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	h, ok := state.Get[*api.Host](s.st, chosen)
	if !ok {
		return nil, nil, api.Errorf(api.ErrConflict, "host %s left the inventory", chosen)
	}
	return vm, h, nil
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
func (s *Service) fillImportedDisks(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, pv plannedVM, sp *agent.StagedPackage, p importParams, lo, hi int) error {
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
		_, err := s.hosts.StagingConvert(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, req, func(f float64, msg string) {
			t.Progress(ctx, lo+int(f*float64(hi-lo)), "vm "+vm.Metadata.Name+": "+msg)
		})
		if err != nil {
			return err
		}
	}
	if vm.Spec.CDROM == "" {
		return nil
	}
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
	if _, err := s.hosts.PutFile(ctx, hosts.TargetOf(h), d.Datastore.ID, rel, &b, int64(b.Len()), false); err != nil {
		return fmt.Errorf("write the OVF environment ISO: %w", err)
	}
	return nil
}

// undoImport removes the VMs an import task made, with their files, and
// says what it removed.
func (s *Service) undoImport(ctx context.Context, taskID string) string {
	_ = s.st.Cache.Sync(ctx)
	vms := state.List(s.st, func(vm *api.VM) bool {
		return vm.Metadata.Labels[importLabel] == taskID && vm.Status.Phase == api.PhaseCreating
	})
	if len(vms) == 0 {
		return "no VM had been made yet"
	}
	var names []string
	for _, vm := range vms {
		names = append(names, vm.Metadata.Name)
		if h, err := s.inv.VMHost(vm); err == nil {
			if err := s.hosts.Undefine(ctx, hosts.TargetOf(h), vm.Metadata.ID, true); err != nil && !errors.Is(err, api.ErrNotFound) {
				s.log.Warn("cannot undefine an imported VM", "vm", vm.Metadata.Name, "err", err)
			}
			if len(vm.Spec.Disks) > 0 {
				d := vm.Spec.Disks[0]
				if err := s.hosts.DeleteFile(ctx, hosts.TargetOf(h), d.Datastore.ID, path.Dir(d.Path)); err != nil {
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
