package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

// Snapshots are external: taking one freezes each disk's current file
// and the VM goes on writing to a new thin overlay on it. The VM's spec
// keeps the tree (Spec.Snapshots, Spec.CurrentSnapshotID; by ID, as names
// are free again once deleted) with every snapshot's frozen files, so that
// which file backs which is known here:
// a snapshot's file for a disk is the backing file of the same disk's
// file in each of its children (child snapshots, and the current state
// when it descends from it). Disk names are never reused within a VM.

// MaxSnapshots bounds a VM's snapshot tree (as vSphere advises: long
// chains slow every read).
const MaxSnapshots = 32

type snapshotCreateParams struct {
	api.SnapshotCreateRequest
	// ID is the new snapshot's.
	ID string `json:"id,omitempty"`
	// Overlays are the disks' new files (relative to their datastores),
	// chosen when the request came in so that a resumed task names the
	// same files.
	Overlays   map[string]string `json:"overlays"`
	MemoryPath string            `json:"memoryPath,omitempty"`
}

// The Snapshot of these params is an ID (a name in tasks queued by
// earlier versions).
type snapshotRevertParams struct {
	Snapshot string            `json:"snapshot"`
	Overlays map[string]string `json:"overlays"`
}

type snapshotDeleteParams struct {
	Snapshot string `json:"snapshot"`
}

// fileSuffix makes file names unique within a VM's folder.
func fileSuffix() string {
	id := strings.ReplaceAll(store.NewID(), "-", "")
	return id[len(id)-12:]
}

// overlayPath names a new file for a disk next to its current one.
func overlayPath(cur, disk, suffix string) string {
	return path.Join(path.Dir(cur), disk+"-"+suffix+".qcow2")
}

// findSnapshot finds the snapshot a user names, by ID or name, among
// those not deleted. A request that goes on to walk the tree (revert,
// delete, clone) is refused here if it is damaged, naming the VM.
func findSnapshot(vm *api.VM, ref string) (*api.VMSnapshot, error) {
	if err := checkTree(vm); err != nil {
		return nil, err
	}
	var named []*api.VMSnapshot
	for i := range vm.Spec.Snapshots {
		s := &vm.Spec.Snapshots[i]
		switch {
		case s.Hidden:
		case s.ID == ref:
			return s, nil
		case s.Name == ref:
			named = append(named, s)
		}
	}
	switch len(named) {
	case 0:
		return nil, api.Errorf(api.ErrNotFound, "vm %s has no snapshot %q", vm.Metadata.Name, ref)
	case 1:
		return named[0], nil
	}
	// Only a tree from before names were claimed can have this.
	ids := make([]string, len(named))
	for i, s := range named {
		ids[i] = s.ID
	}
	return nil, api.Errorf(api.ErrConflict, "vm %s has %d snapshots named %q (IDs %s): give the ID of the one you mean", vm.Metadata.Name, len(named), ref, strings.Join(ids, ", "))
}

// taskSnapshot finds a task's snapshot: by ID, deleted or not, or by
// name for a task queued by an earlier version. nil if it is gone.
func taskSnapshot(vm *api.VM, ref string) *api.VMSnapshot {
	if i := slices.IndexFunc(vm.Spec.Snapshots, func(s api.VMSnapshot) bool { return s.ID == ref }); i >= 0 {
		return &vm.Spec.Snapshots[i]
	}
	if s, err := findSnapshot(vm, ref); err == nil {
		return s
	}
	return nil
}

// checkTree refuses a VM's damaged snapshot tree.
func checkTree(vm *api.VM) error {
	if err := api.CheckSnapshotTree(vm.Spec.Snapshots); err != nil {
		return fmt.Errorf("vm %s: %w", vm.Metadata.Name, err)
	}
	return nil
}

// storageReady checks what every storage change of a VM needs: a VM that
// exists for good, on a host that answers, and no migration under way.
func (s *Server) storageReady(vm *api.VM) (*api.Host, error) {
	if err := inventory.CheckReady(vm); err != nil {
		return nil, err
	}
	if vm.Status.PowerState == api.PowerUnknown {
		return nil, api.Errorf(api.ErrConflict, "the state of vm %s is unknown: %s", vm.Metadata.Name, vm.Status.Message)
	}
	return s.inv.VMHost(vm)
}

// POST /api/v1/vms/{name}/snapshots
func (s *Server) createSnapshot(w http.ResponseWriter, r *http.Request) {
	var req api.SnapshotCreateRequest
	if !decode(w, r, &req) {
		return
	}
	if err := inventory.FirstErr(api.ValidateName("snapshot", req.Name), inventory.ValidateDescription(req.Description)); err != nil {
		fail(w, err)
		return
	}
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	// The name is claimed with the task: racing creates of one name at
	// one VM get 409, all but one.
	t, err := s.inv.SubmitOnVM(r.Context(), vm, func(vm *api.VM) (*api.Task, error) {
		p, err := s.planSnapshot(vm, req)
		if err != nil {
			return nil, fmt.Errorf("snapshot vm %s: %w", vm.Metadata.Name, err)
		}
		t := tasks.New(r.Context(), api.OpSnapshotCreate, vm, p)
		t.Claims = []string{inventory.VMClaim(vm.Metadata.ID, "snapshots", req.Name)}
		return t, nil
	})
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

func (s *Server) planSnapshot(vm *api.VM, req api.SnapshotCreateRequest) (snapshotCreateParams, error) {
	p := snapshotCreateParams{SnapshotCreateRequest: req, ID: store.NewID(), Overlays: map[string]string{}}
	if _, err := s.storageReady(vm); err != nil {
		return p, err
	}
	pending := s.inv.PendingClaims(inventory.VMClaim(vm.Metadata.ID, "snapshots", ""))
	switch n := len(vm.Spec.Snapshots) + len(pending); {
	case vm.Spec.Template:
		return p, api.Errorf(api.ErrConflict, "vm %s is a template: clone it to change it", vm.Metadata.Name)
	case len(vm.Spec.Disks) == 0:
		return p, api.Errorf(api.ErrConflict, "vm %s has no disks to snapshot", vm.Metadata.Name)
	case n >= MaxSnapshots:
		return p, api.Errorf(api.ErrConflict, "vm %s has %d snapshots (some being taken), the most it may have; delete some first", vm.Metadata.Name, n)
	}
	if slices.ContainsFunc(vm.Spec.Snapshots, func(x api.VMSnapshot) bool { return x.Name == req.Name && !x.Hidden }) {
		return p, api.Errorf(api.ErrConflict, "vm %s already has a snapshot named %q", vm.Metadata.Name, req.Name)
	}
	if t := pending[inventory.VMClaim(vm.Metadata.ID, "snapshots", req.Name)]; t != nil {
		return p, api.Errorf(api.ErrConflict, "vm %s is already taking a snapshot named %q (task %s)", vm.Metadata.Name, req.Name, t.Metadata.ID)
	}
	if err := s.inv.NotMoving(vm); err != nil {
		return p, err
	}
	suffix := fileSuffix()
	for _, d := range vm.Spec.Disks {
		p.Overlays[d.Name] = overlayPath(d.Path, d.Name, suffix)
	}
	if req.Memory && vm.Status.PowerState != api.PowerOff {
		p.MemoryPath = path.Join(path.Dir(vm.Spec.Disks[0].Path), "mem-"+suffix+".vmstate")
		if err := s.checkFree(vm.Spec.Disks[0].Datastore.ID, vm.Spec.MemoryBytes, "saving the memory of vm "+vm.Metadata.Name); err != nil {
			return p, err
		}
	}
	return p, nil
}

// checkFree refuses work that needs more space than a datastore has.
func (s *Server) checkFree(dsID string, need api.Size, what string) error {
	o, ok := s.cache.Get(api.KindDatastore, dsID)
	if !ok {
		return nil
	}
	ds := o.(*api.Datastore)
	if ds.Status.CapacityBytes == 0 {
		return nil // not measured yet: the host checks
	}
	if margin := api.Size(64 << 20); need+margin > ds.Status.FreeBytes {
		return api.Errorf(api.ErrUnprocessable, "datastore %s has %s free; %s needs %s", ds.Metadata.Name, ds.Status.FreeBytes, what, need+margin)
	}
	return nil
}

func (s *Server) submitTask(w http.ResponseWriter, r *http.Request, t *api.Task) {
	t, err := s.submitter.Submit(r.Context(), s.store.Txn(), t)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// abs resolves a path on a datastore.
func (s *Server) abs(dsID, rel string) (string, error) {
	o, ok := s.cache.Get(api.KindDatastore, dsID)
	if !ok {
		return "", api.Errorf(api.ErrConflict, "datastore %s is gone", dsID)
	}
	return filepath.Join(o.(*api.Datastore).Spec.Path, rel), nil
}

func (s *Server) runSnapshotCreate(ctx context.Context, t *tasks.Run) (any, error) {
	var p snapshotCreateParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	req := hypervisor.SnapshotRequest{Overlays: map[string]string{}, Quiesce: p.Quiesce}
	for _, d := range vm.Spec.Disks {
		rel, ok := p.Overlays[d.Name]
		if !ok {
			return nil, api.Errorf(api.ErrConflict, "vm %s changed since the snapshot was asked for (disk %s is new); ask again", vm.Metadata.Name, d.Name)
		}
		if req.Overlays[d.Name], err = s.abs(d.Datastore.ID, rel); err != nil {
			return nil, err
		}
	}
	if p.MemoryPath != "" {
		if req.MemoryFile, err = s.abs(vm.Spec.Disks[0].Datastore.ID, p.MemoryPath); err != nil {
			return nil, err
		}
	}
	what := "taking the snapshot"
	if p.Memory {
		what += " (the VM pauses while its memory is saved)"
	}
	t.Progress(ctx, 10, what)
	var res hypervisor.SnapshotResult
	if t.Resumed {
		// The host may have switched already: it says which files it uses.
		if info, err := s.agents.VM(ctx, hosts.TargetOf(h), vm.Metadata.ID); err == nil && len(info.Disks) > 0 &&
			slices.ContainsFunc(info.Disks, func(d hypervisor.DiskConfig) bool { return d.Path == req.Overlays[d.Name] }) {
			res.Note = "the server restarted while the snapshot was taken; its memory is not kept"
			if req.MemoryFile != "" {
				_ = s.agents.RemoveFiles(ctx, hosts.TargetOf(h), []string{req.MemoryFile})
			}
			goto record
		}
	}
	res, err = s.agents.Snapshot(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	if err != nil {
		return nil, fmt.Errorf("snapshot vm %s: %w", vm.Metadata.Name, err)
	}
record:
	if p.ID == "" {
		p.ID = store.NewID() // queued by an earlier version
	}
	snap := api.VMSnapshot{ID: p.ID, Name: p.Name, Description: p.Description, Created: time.Now().UTC(), ParentID: vm.Spec.CurrentSnapshotID,
		PowerState: vm.Status.PowerState, Memory: res.Memory, Quiesced: res.Quiesced, CPUs: vm.Spec.CPUs, MemoryBytes: vm.Spec.MemoryBytes,
		Disks: slices.Clone(vm.Spec.Disks)}
	if res.Memory {
		snap.MemoryPath = p.MemoryPath
		// The saved state goes back into the hardware it came from.
		if snap.Hardware = res.Hardware; snap.Hardware != nil {
			snap.CPUs, snap.MemoryBytes = snap.Hardware.TotalCPUs(), snap.Hardware.TotalMemory()
		}
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		for i := range v.Spec.Disks {
			if rel, ok := p.Overlays[v.Spec.Disks[i].Name]; ok {
				v.Spec.Disks[i].Path = rel
			}
		}
		v.Spec.Snapshots = append(v.Spec.Snapshots, snap)
		v.Spec.CurrentSnapshotID = snap.ID
		return nil
	})
	return api.SnapshotResult{Snapshot: p.Name, Quiesced: res.Quiesced, Note: res.Note}, nil
}

// POST /api/v1/vms/{name}/snapshots/{snapshot}/revert
func (s *Server) revertSnapshot(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	snap, err := findSnapshot(vm, r.PathValue("snapshot"))
	if err == nil {
		_, err = s.storageReady(vm)
	}
	if err == nil {
		err = s.inv.NotMoving(vm)
	}
	if err != nil {
		fail(w, fmt.Errorf("revert vm %s: %w", vm.Metadata.Name, err))
		return
	}
	p := snapshotRevertParams{Snapshot: snap.ID, Overlays: map[string]string{}}
	suffix := fileSuffix()
	for _, d := range snap.Disks {
		p.Overlays[d.Name] = overlayPath(d.Path, d.Name, suffix)
	}
	s.submitTask(w, r, tasks.New(r.Context(), api.OpSnapshotRevert, vm, p))
}

func (s *Server) runSnapshotRevert(ctx context.Context, t *tasks.Run) (any, error) {
	var p snapshotRevertParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if err := checkTree(vm); err != nil {
		return nil, err
	}
	snap := taskSnapshot(vm, p.Snapshot)
	if snap == nil || snap.Hidden {
		return nil, api.Errorf(api.ErrNotFound, "vm %s no longer has snapshot %s", vm.Metadata.Name, p.Snapshot)
	}
	req := hypervisor.RevertRequest{CPUs: snap.CPUs, MemoryBytes: int64(snap.MemoryBytes), Paused: snap.PowerState == api.PowerSuspended}
	if snap.Memory {
		req.Hardware = snap.Hardware
	}
	newDisks := slices.Clone(snap.Disks)
	for i, d := range snap.Disks {
		frozen, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return nil, err
		}
		newDisks[i].Path = p.Overlays[d.Name]
		ov, err := s.abs(d.Datastore.ID, newDisks[i].Path)
		if err != nil {
			return nil, err
		}
		req.Disks = append(req.Disks, hypervisor.DiskConfig{Name: d.Name, Path: ov, SizeBytes: int64(d.SizeBytes), Bus: d.Bus, Source: frozen,
			Thick: d.Thick, Slot: d.Slot})
	}
	if snap.Memory {
		if req.MemoryFile, err = s.abs(vm.Spec.Disks[0].Datastore.ID, snap.MemoryPath); err != nil {
			return nil, err
		}
	}
	// The files of the state left behind go, once the VM no longer uses
	// them: nothing else can (only snapshots and templates are linked to).
	var drop []string
	for _, d := range vm.Spec.Disks {
		if slices.ContainsFunc(newDisks, func(x api.VMDisk) bool { return x.Path == d.Path }) {
			continue // done before the server restarted
		}
		if f, err := s.abs(d.Datastore.ID, d.Path); err == nil {
			drop = append(drop, f)
		}
	}
	t.Progress(ctx, 20, "reverting to snapshot "+snap.Name)
	if vm.Status.PowerState == api.PowerOn && !snap.Memory {
		t.Progress(ctx, 20, "powering off, then reverting to snapshot "+snap.Name+" (taken without memory)")
	}
	st, err := s.agents.Revert(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	if err != nil {
		return nil, fmt.Errorf("revert vm %s to snapshot %s: %w", vm.Metadata.Name, snap.Name, err)
	}
	if err := s.agents.RemoveFiles(ctx, hosts.TargetOf(h), drop); err != nil {
		s.log.Warn("cannot remove the files of a reverted state", "vm", vm.Metadata.Name, "err", err)
	}
	t.Stage(api.KindVM, vm.Metadata.ID, func(o api.Object) error {
		v := o.(*api.VM)
		v.Spec.Disks = newDisks
		v.Spec.CPUs, v.Spec.MemoryBytes = snap.CPUs, snap.MemoryBytes
		v.Spec.CurrentSnapshotID = snap.ID
		v.Status.Disks = nil // measured again by the host
		return nil
	})
	t.Stage(api.KindVM, vm.Metadata.ID, inventory.VMStateChange(st))
	return api.SnapshotResult{Snapshot: snap.Name}, nil
}

// DELETE /api/v1/vms/{name}/snapshots/{snapshot}
func (s *Server) deleteSnapshot(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	snap, err := findSnapshot(vm, r.PathValue("snapshot"))
	if err == nil {
		_, err = s.storageReady(vm)
	}
	if err == nil {
		err = s.inv.NotMoving(vm)
	}
	if err == nil {
		if deps := s.snapshotDependents(vm, snap); len(deps) > 0 {
			err = api.Errorf(api.ErrConflict, "linked clones depend on snapshot %s: %s; delete them first", snap.Name, strings.Join(inventory.FirstN(deps, 10), ", "))
		}
	}
	if err != nil {
		fail(w, fmt.Errorf("delete snapshot of vm %s: %w", vm.Metadata.Name, err))
		return
	}
	s.submitTask(w, r, tasks.New(r.Context(), api.OpSnapshotDelete, vm, snapshotDeleteParams{Snapshot: snap.ID}))
}

// GET /api/v1/vms/{name}/snapshots
func (s *Server) listSnapshots(w http.ResponseWriter, r *http.Request) {
	vm, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	snaps, _, err := visibleTree(vm)
	if err != nil {
		fail(w, fmt.Errorf("list the snapshots of vm %s: %w", vm.Metadata.Name, err))
		return
	}
	reply(w, http.StatusOK, api.List[api.VMSnapshot]{Items: nonNil(snaps), Revision: vm.Metadata.Revision})
}

// visibleTree is a VM's snapshot tree as a user sees it: the snapshots not
// deleted, those under a deleted one re-parented to their nearest visible
// ancestor, and the one the current state descends from (likewise).
func visibleTree(vm *api.VM) (snaps []api.VMSnapshot, current string, err error) {
	if err := checkTree(vm); err != nil {
		return nil, "", err
	}
	visible := func(id string) (string, error) {
		line, err := api.SnapshotLineage(vm.Spec.Snapshots, id)
		for _, sn := range line {
			if !sn.Hidden {
				return sn.ID, err
			}
		}
		return "", err
	}
	for _, sn := range vm.Spec.Snapshots {
		if sn.Hidden {
			continue
		}
		if sn.ParentID, err = visible(sn.ParentID); err != nil {
			return nil, "", fmt.Errorf("vm %s: %w", vm.Metadata.Name, err)
		}
		snaps = append(snaps, sn)
	}
	if current, err = visible(vm.Spec.CurrentSnapshotID); err != nil {
		return nil, "", fmt.Errorf("vm %s: %w", vm.Metadata.Name, err)
	}
	return snaps, current, nil
}

// dependents lists the other VMs whose disks are linked to a file.
func (s *Server) dependents(self, abs string) []string {
	var names []string
	s.cache.Each(api.KindVM, func(o api.Object) {
		v := o.(*api.VM)
		if v.Metadata.ID == self {
			return
		}
		for _, d := range inventory.VMFiles(v) {
			if d.Linked && d.Source == abs {
				names = append(names, v.Metadata.Name)
				return
			}
		}
	})
	slices.Sort(names)
	return names
}

func (s *Server) snapshotDependents(vm *api.VM, sn *api.VMSnapshot) []string {
	var out []string
	for _, d := range sn.Disks {
		if f, err := s.abs(d.Datastore.ID, d.Path); err == nil {
			out = append(out, s.dependents(vm.Metadata.ID, f)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// vmDependents lists the VMs linked to any file of a VM.
func (s *Server) vmDependents(vm *api.VM) []string {
	var out []string
	for _, d := range inventory.VMFiles(vm) {
		if f, err := s.abs(d.Datastore.ID, d.Path); err == nil {
			out = append(out, s.dependents(vm.Metadata.ID, f)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (s *Server) runSnapshotDelete(ctx context.Context, t *tasks.Run) (any, error) {
	var p snapshotDeleteParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	sn := taskSnapshot(vm, p.Snapshot)
	first := sn != nil && !sn.Hidden
	if !first && !t.Resumed {
		return nil, api.Errorf(api.ErrNotFound, "vm %s no longer has snapshot %s", vm.Metadata.Name, p.Snapshot)
	}
	// Else hidden before the server restarted: what is left is merging
	// away the data of the hidden snapshots.
	res := api.SnapshotResult{Snapshot: p.Snapshot}
	id := p.Snapshot
	if sn != nil {
		res.Snapshot, id = sn.Name, sn.ID
	}
	dep := func(absPath string) bool { return len(s.dependents(vm.Metadata.ID, absPath)) > 0 }
	for n := 0; n < 2*MaxSnapshots+2; n++ {
		spec := vm.Spec
		if first {
			spec.Snapshots = slices.Clone(spec.Snapshots)
			hide(&spec, id)
		}
		step, err := planCollect(spec, vm.Status.PowerState != api.PowerOff, s.absFunc(), dep)
		if err != nil {
			return nil, fmt.Errorf("delete snapshot %s of vm %s: %w", res.Snapshot, vm.Metadata.Name, err)
		}
		if step == nil {
			if first && !t.Resumed {
				// Its data still has two branches on it: it is only hidden.
				res.Kept = "its data stays until one of the branches that use it is deleted"
				if err := state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
					hide(&o.(*api.VM).Spec, id)
					return nil
				}); err != nil {
					return nil, err
				}
			}
			return res, nil
		}
		t.Announce(ctx, min(10+10*n, 90), step.what)
		if err := s.runStep(ctx, t, vm, h, step); err != nil {
			return nil, fmt.Errorf("delete snapshot %s of vm %s: %s: %w", res.Snapshot, vm.Metadata.Name, step.what, err)
		}
		for _, m := range step.merges {
			res.Merged = append(res.Merged, filepath.Base(m.Top))
		}
		// Record the step: the spec always says which files hold what.
		hidden := first
		if err := state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
			v := o.(*api.VM)
			if hidden {
				hide(&v.Spec, id)
			}
			step.apply(&v.Spec)
			return nil
		}); err != nil {
			return nil, err
		}
		first = false
		o, err := s.store.Get(ctx, api.KindVM, vm.Metadata.ID)
		if err != nil {
			return nil, err
		}
		vm = o.(*api.VM)
	}
	return res, nil
}

// hide marks a snapshot deleted (its name is free again); it keeps its
// record while its data is needed.
func hide(spec *api.VMSpec, id string) {
	for i := range spec.Snapshots {
		if sn := &spec.Snapshots[i]; sn.ID == id {
			sn.Hidden = true
		}
	}
}

func (s *Server) absFunc() func(d api.VMDisk) string {
	return func(d api.VMDisk) string {
		f, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return ""
		}
		return f
	}
}

// runStep performs one step of a snapshot delete on the VM's host,
// waiting for a host that is restarting: merges are idempotent.
func (s *Server) runStep(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, st *collectStep) error {
	retry := func(what string, fn func() error) error {
		deadline := time.Now().Add(5 * time.Minute)
		for {
			err := fn()
			if err == nil || !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline) || ctx.Err() != nil {
				return err
			}
			t.Progress(ctx, t.Task.Progress, what+": waiting for host "+h.Metadata.Name+" to answer again")
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(2 * time.Second):
			}
		}
	}
	for _, m := range st.merges {
		merge := func() error { return s.agents.MergeDisk(ctx, hosts.TargetOf(h), vm.Metadata.ID, m) }
		err := retry("merging "+filepath.Base(m.Top), merge)
		// QEMU may have died under the merge: once the host has seen it
		// go, it finishes the merge offline.
		for try := 0; err != nil && try < 3 && ctx.Err() == nil; try++ {
			s.log.Warn("disk merge failed; trying again", "vm", vm.Metadata.Name, "top", m.Top, "err", err)
			time.Sleep(2 * time.Second)
			err = retry("merging "+filepath.Base(m.Top), merge)
		}
		if err != nil {
			return err
		}
	}
	return retry("removing files", func() error { return s.agents.RemoveFiles(ctx, hosts.TargetOf(h), st.remove) })
}
