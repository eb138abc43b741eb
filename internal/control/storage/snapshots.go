package storage

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
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

// FindSnapshot finds the snapshot a user names, by ID or name, among
// those not deleted. A request that goes on to walk the tree (revert,
// delete, clone) is refused here if it is damaged, naming the VM.
func FindSnapshot(vm *api.VM, ref string) (*api.VMSnapshot, error) {
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
	if s, err := FindSnapshot(vm, ref); err == nil {
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

// VisibleTree is a VM's snapshot tree as a user sees it: the snapshots not
// deleted, those under a deleted one re-parented to their nearest visible
// ancestor, and the one the current state descends from (likewise).
func VisibleTree(vm *api.VM) (snaps []api.VMSnapshot, current string, err error) {
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

// CreateSnapshot queues the snapshot a request asks of a VM. The name is
// claimed with the task: racing creates of one name at one VM get 409,
// all but one.
func (s *Service) CreateSnapshot(ctx context.Context, vm *api.VM, req api.SnapshotCreateRequest) (*api.Task, error) {
	return s.inv.SubmitOnVM(ctx, vm, func(vm *api.VM) (*api.Task, error) {
		p, err := s.planSnapshot(vm, req)
		if err != nil {
			return nil, fmt.Errorf("snapshot vm %s: %w", vm.Metadata.Name, err)
		}
		t := tasks.New(ctx, api.OpSnapshotCreate, vm, p)
		t.Claims = []string{inventory.VMClaim(vm.Metadata.ID, "snapshots", req.Name)}
		return t, nil
	})
}

func (s *Service) planSnapshot(vm *api.VM, req api.SnapshotCreateRequest) (snapshotCreateParams, error) {
	p := snapshotCreateParams{SnapshotCreateRequest: req, ID: store.NewID(), Overlays: map[string]string{}}
	if _, err := s.ready(vm); err != nil {
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

// snapshotRequest is what the host is asked for: the overlays and memory
// file as absolute paths.
func (s *Service) snapshotRequest(vm *api.VM, p snapshotCreateParams) (hypervisor.SnapshotRequest, error) {
	req := hypervisor.SnapshotRequest{Overlays: map[string]string{}, Quiesce: p.Quiesce}
	var err error
	for _, d := range vm.Spec.Disks {
		rel, ok := p.Overlays[d.Name]
		if !ok {
			return req, api.Errorf(api.ErrConflict, "vm %s changed since the snapshot was asked for (disk %s is new); ask again", vm.Metadata.Name, d.Name)
		}
		if req.Overlays[d.Name], err = s.abs(d.Datastore.ID, rel); err != nil {
			return req, err
		}
	}
	if p.MemoryPath != "" {
		if req.MemoryFile, err = s.abs(vm.Spec.Disks[0].Datastore.ID, p.MemoryPath); err != nil {
			return req, err
		}
	}
	return req, nil
}

func (s *Service) runSnapshotCreate(ctx context.Context, t *tasks.Run) (any, error) {
	var p snapshotCreateParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	req, err := s.snapshotRequest(vm, p)
	if err != nil {
		return nil, err
	}
	what := "taking the snapshot"
	if p.Memory {
		what += " (the VM pauses while its memory is saved)"
	}
	t.Progress(ctx, 10, what)
	res, taken := s.snapshotTaken(ctx, t, vm, h, req)
	if !taken {
		if res, err = s.hosts.Snapshot(ctx, hosts.TargetOf(h), vm.Metadata.ID, req); err != nil {
			return nil, fmt.Errorf("snapshot vm %s: %w", vm.Metadata.Name, err)
		}
	}
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

// snapshotTaken says whether a resumed task's host switched to the new
// overlays already (it says which files it uses): then the snapshot is
// taken, without its memory.
func (s *Service) snapshotTaken(ctx context.Context, t *tasks.Run, vm *api.VM, h *api.Host, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, bool) {
	var res hypervisor.SnapshotResult
	if !t.Resumed {
		return res, false
	}
	info, err := s.hosts.VM(ctx, hosts.TargetOf(h), vm.Metadata.ID)
	if err != nil || len(info.Disks) == 0 ||
		!slices.ContainsFunc(info.Disks, func(d hypervisor.DiskConfig) bool { return d.Path == req.Overlays[d.Name] }) {
		return res, false
	}
	res.Note = "the server restarted while the snapshot was taken; its memory is not kept"
	if req.MemoryFile != "" {
		_ = s.hosts.RemoveFiles(ctx, hosts.TargetOf(h), []string{req.MemoryFile})
	}
	return res, true
}

// RevertSnapshot queues the revert of a VM to one of its snapshots.
func (s *Service) RevertSnapshot(ctx context.Context, vm *api.VM, ref string) (*api.Task, error) {
	snap, err := FindSnapshot(vm, ref)
	if err == nil {
		_, err = s.ready(vm)
	}
	if err == nil {
		err = s.inv.NotMoving(vm)
	}
	if err != nil {
		return nil, fmt.Errorf("revert vm %s: %w", vm.Metadata.Name, err)
	}
	p := snapshotRevertParams{Snapshot: snap.ID, Overlays: map[string]string{}}
	suffix := fileSuffix()
	for _, d := range snap.Disks {
		p.Overlays[d.Name] = overlayPath(d.Path, d.Name, suffix)
	}
	return s.submit(ctx, tasks.New(ctx, api.OpSnapshotRevert, vm, p))
}

// revertRequest is what the host is asked for to go back to a snapshot,
// and the VM's disks after.
func (s *Service) revertRequest(vm *api.VM, snap *api.VMSnapshot, p snapshotRevertParams) (hypervisor.RevertRequest, []api.VMDisk, error) {
	req := hypervisor.RevertRequest{CPUs: snap.CPUs, MemoryBytes: int64(snap.MemoryBytes), Paused: snap.PowerState == api.PowerSuspended}
	if snap.Memory {
		req.Hardware = snap.Hardware
	}
	newDisks := slices.Clone(snap.Disks)
	for i, d := range snap.Disks {
		frozen, err := s.abs(d.Datastore.ID, d.Path)
		if err != nil {
			return req, nil, err
		}
		newDisks[i].Path = p.Overlays[d.Name]
		ov, err := s.abs(d.Datastore.ID, newDisks[i].Path)
		if err != nil {
			return req, nil, err
		}
		req.Disks = append(req.Disks, hypervisor.DiskConfig{Name: d.Name, Path: ov, SizeBytes: int64(d.SizeBytes), Bus: d.Bus, Source: frozen,
			Thick: d.Thick, Slot: d.Slot})
	}
	if snap.Memory {
		var err error
		if req.MemoryFile, err = s.abs(vm.Spec.Disks[0].Datastore.ID, snap.MemoryPath); err != nil {
			return req, nil, err
		}
	}
	return req, newDisks, nil
}

func (s *Service) runSnapshotRevert(ctx context.Context, t *tasks.Run) (any, error) {
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
	req, newDisks, err := s.revertRequest(vm, snap, p)
	if err != nil {
		return nil, err
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
	st, err := s.hosts.Revert(ctx, hosts.TargetOf(h), vm.Metadata.ID, req)
	if err != nil {
		return nil, fmt.Errorf("revert vm %s to snapshot %s: %w", vm.Metadata.Name, snap.Name, err)
	}
	if err := s.hosts.RemoveFiles(ctx, hosts.TargetOf(h), drop); err != nil {
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
