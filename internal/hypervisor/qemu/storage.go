package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/diskfile"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
)

var _ hypervisor.Storage = (*Driver)(nil)

// hold keeps QEMU's STOP and RESUME events from being read as the VM
// being suspended or resumed while a storage operation pauses it itself.
func (v *vm) hold() func() {
	v.mu.Lock()
	v.quiet++
	v.mu.Unlock()
	return func() {
		v.mu.Lock()
		v.quiet--
		v.mu.Unlock()
	}
}

func (v *vm) isQuiet() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.quiet > 0
}

// powerState is the VM's power state now.
func (v *vm) powerState() string { return v.state().Power }

func (v *vm) diskIndex(name string) int {
	return slices.IndexFunc(v.cfg.Disks, func(d hypervisor.DiskConfig) bool { return d.Name == name })
}

// setDiskPath records a disk's new active file.
func (v *vm) setDiskPath(name, path string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if i := v.diskIndex(name); i >= 0 {
		v.cfg.Disks[i].Path = path
	}
}

func (v *vm) disk(name string) (hypervisor.DiskConfig, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.diskIndex(name)
	if i < 0 {
		return hypervisor.DiskConfig{}, fmt.Errorf("vm %s has no disk %s: %w", v.cfg.Name, name, hypervisor.ErrInvalid)
	}
	return v.cfg.Disks[i], nil
}

// Snapshot switches the VM's disks to new overlays: for a VM that is off
// by making them with qemu-img, for one that runs with QMP's
// blockdev-snapshot in one transaction over all disks. With a memory file
// the VM is paused, its disks switched and its state saved, then it goes
// on: disks and memory are of the same instant.
func (d *Driver) Snapshot(ctx context.Context, id string, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error) {
	var res hypervisor.SnapshotResult
	v, err := d.get(id)
	if err != nil {
		return res, err
	}
	if len(req.Overlays) == 0 {
		return res, fmt.Errorf("snapshot vm %s: no disks to snapshot: %w", v.cfg.Name, hypervisor.ErrInvalid)
	}
	sws, err := v.snapshotSwitches(ctx, req.Overlays)
	if err != nil || len(sws) == 0 {
		return res, err
	}
	undo, err := v.makeOverlays(ctx, sws)
	if err != nil {
		return res, err
	}
	power := v.powerState()
	if power == hypervisor.StateOff {
		for _, s := range sws {
			v.setDiskPath(s.name, s.overlay)
		}
		if req.MemoryFile != "" {
			res.Note = "the VM is off: there is no memory to save"
		}
		return res, nil
	}
	defer v.hold()()
	if req.Quiesce {
		thaw, err := v.freeze(ctx)
		if err != nil {
			res.Note = "file systems not frozen: " + err.Error()
		} else {
			res.Quiesced = true
			defer thaw()
		}
	}
	if err := v.switchToOverlays(ctx, sws, undo, req.MemoryFile != "", power); err != nil {
		return res, err
	}
	if req.MemoryFile != "" {
		v.snapshotMemory(ctx, req.MemoryFile, power, &res)
	}
	return res, nil
}

// snapSwitch is one disk a snapshot switches from its file (old) to a new
// overlay.
type snapSwitch struct {
	name, old, overlay string
	size               int64
}

// snapshotSwitches are the disks to switch to the overlays (disk name:
// overlay file), in the order of their names; those already on theirs (a
// retried call) are left out.
func (v *vm) snapshotSwitches(ctx context.Context, overlays map[string]string) ([]snapSwitch, error) {
	var sws []snapSwitch
	for name, ov := range overlays {
		dc, err := v.disk(name)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		if dc.Path == ov {
			continue // done before (a retried call)
		}
		if _, err := os.Stat(ov); err == nil {
			return nil, fmt.Errorf("snapshot vm %s: overlay %s already exists", v.cfg.Name, ov)
		}
		info, err := disk.Inspect(ctx, dc.Path)
		if err != nil {
			return nil, fmt.Errorf("snapshot vm %s: %w", v.cfg.Name, err)
		}
		sws = append(sws, snapSwitch{name, dc.Path, ov, info.VirtualSize})
	}
	slices.SortFunc(sws, func(a, b snapSwitch) int { return strings.Compare(a.name, b.name) })
	return sws, nil
}

// makeOverlays creates the overlay files, and returns how to remove them.
func (v *vm) makeOverlays(ctx context.Context, sws []snapSwitch) (undo func(), err error) {
	var made []string
	undo = func() {
		for _, p := range made {
			_ = os.Remove(p)
		}
	}
	for _, s := range sws {
		if err := disk.CreateOverlayOn(ctx, s.overlay, s.old, "qcow2", s.size); err != nil {
			undo()
			return nil, fmt.Errorf("snapshot vm %s: %w", v.cfg.Name, err)
		}
		made = append(made, s.overlay)
	}
	return undo, nil
}

// switchToOverlays opens the overlays in QEMU and switches the running
// VM's disks to them in one transaction, pausing the VM first when its
// memory is to be saved too (it stays paused then).
func (v *vm) switchToOverlays(ctx context.Context, sws []snapSwitch, undo func(), pause bool, power string) error {
	var actions []map[string]any
	for _, s := range sws {
		node, err := v.node(ctx, s.name)
		if err != nil {
			undo()
			return err
		}
		ovNode := blockjob.NodeName(s.overlay)
		add := map[string]any{"driver": "qcow2", "node-name": ovNode, "discard": "unmap", "backing": nil,
			"file": map[string]any{"driver": "file", "node-name": ovNode + "-file", "filename": s.overlay, "discard": "unmap"}}
		if err := v.command(ctx, "blockdev-add", add); err != nil {
			blockjob.Drop(v, blockjob.NodeName(s.overlay))
			undo()
			return fmt.Errorf("snapshot vm %s: open overlay %s: %w", v.cfg.Name, s.overlay, err)
		}
		actions = append(actions, map[string]any{"type": "blockdev-snapshot", "data": map[string]any{"node": node, "overlay": ovNode}})
	}
	dropAll := func() {
		for _, s := range sws {
			blockjob.Drop(v, blockjob.NodeName(s.overlay))
		}
		undo()
	}
	paused := false
	if pause {
		if err := v.command(ctx, "stop", nil); err != nil {
			dropAll()
			return fmt.Errorf("snapshot vm %s: pause: %w", v.cfg.Name, err)
		}
		paused = true
	}
	resume := func() {
		if paused && power == hypervisor.StateOn {
			_ = v.command(context.WithoutCancel(ctx), "cont", nil)
		}
	}
	if err := v.command(ctx, "transaction", map[string]any{"actions": actions}); err != nil {
		resume()
		dropAll()
		return fmt.Errorf("snapshot vm %s: switch to the overlays: %w", v.cfg.Name, err)
	}
	for _, s := range sws {
		v.setDiskPath(s.name, s.overlay)
	}
	return nil
}

// snapshotMemory saves the paused VM's memory into file and lets it go on
// (a suspended VM stays paused). The disks switched already: when the
// save fails the snapshot stands without memory, and res says so.
func (v *vm) snapshotMemory(ctx context.Context, file string, power string, res *hypervisor.SnapshotResult) {
	err := migration.SaveMemory(ctx, v, file)
	// A completed save leaves QEMU's disks inactive: cont activates
	// them again (and a suspended VM is paused again after).
	if cerr := v.command(context.WithoutCancel(ctx), "cont", nil); cerr != nil && err == nil {
		err = cerr
	}
	if power == hypervisor.StateSuspended {
		_ = v.command(context.WithoutCancel(ctx), "stop", nil)
	}
	if err != nil {
		_ = os.Remove(file)
		// The disks did switch: the snapshot stands, without memory.
		res.Note = strings.TrimSpace(res.Note + " memory not saved: " + err.Error())
		return
	}
	res.Memory = true
	v.mu.Lock()
	hw := v.hw
	v.mu.Unlock()
	res.Hardware = &hw
}

// freeze asks the guest agent to freeze the guest's file systems, and
// returns how to thaw them.
func (v *vm) freeze(ctx context.Context) (func(), error) {
	fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := v.reach(fctx)
	if err != nil {
		if errors.Is(err, hypervisor.ErrWrongState) || ctx.Err() != nil {
			return nil, err
		}
		return nil, v.silent("quiesce", err)
	}
	var n int
	if err := c.Execute(fctx, "guest-fsfreeze-freeze", nil, &n); err != nil {
		return nil, fmt.Errorf("guest agent: %w", err)
	}
	return func() {
		tctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		var n int
		if err := c.Execute(tctx, "guest-fsfreeze-thaw", nil, &n); err != nil {
			v.log.Error("cannot thaw the guest's file systems", "err", err)
		}
	}, nil
}

// Revert powers the VM off, replaces its disks with new overlays on the
// snapshot's files and, with a memory file, runs it from the saved state.
func (d *Driver) Revert(ctx context.Context, id string, req hypervisor.RevertRequest) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if v.isIncoming() {
		return fmt.Errorf("revert vm %s: it is being received: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	if req.MemoryFile != "" {
		if _, err := os.Stat(req.MemoryFile); err != nil {
			return fmt.Errorf("revert vm %s: saved memory: %w", v.cfg.Name, err)
		}
	}
	if v.powerState() != hypervisor.StateOff {
		if err := v.powerOff(ctx); err != nil {
			return fmt.Errorf("revert vm %s: power off: %w", v.cfg.Name, err)
		}
	}
	if err := v.revertOverlays(ctx, req.Disks); err != nil {
		return err
	}
	v.mu.Lock()
	v.cfg.Disks = nil
	for _, dc := range req.Disks {
		dc.Source, dc.Linked = "", false
		v.cfg.Disks = append(v.cfg.Disks, dc)
	}
	if req.CPUs > 0 {
		v.cfg.CPUs = req.CPUs
	}
	if req.MemoryBytes > 0 {
		v.cfg.MemoryBytes = req.MemoryBytes
	}
	v.mu.Unlock()
	if req.MemoryFile == "" {
		return nil
	}
	return v.restoreMemory(ctx, req)
}

// revertOverlays creates the disks' new overlays on the snapshot's files
// (each disk's Source); a failure removes those it made.
func (v *vm) revertOverlays(ctx context.Context, disks []hypervisor.DiskConfig) error {
	var made []string
	for _, dc := range disks {
		if _, err := os.Stat(dc.Path); err == nil {
			continue // made by an earlier try
		}
		info, err := disk.Inspect(ctx, dc.Source)
		if err != nil {
			return fmt.Errorf("revert vm %s: %w", v.cfg.Name, err)
		}
		if err := disk.CreateOverlayOn(ctx, dc.Path, dc.Source, info.Format, max(dc.SizeBytes, info.VirtualSize)); err != nil {
			for _, p := range made {
				_ = os.Remove(p)
			}
			return fmt.Errorf("revert vm %s: %w", v.cfg.Name, err)
		}
		made = append(made, dc.Path)
	}
	return nil
}

// restoreMemory starts the reverted VM from its saved state, running or
// paused as it was saved.
func (v *vm) restoreMemory(ctx context.Context, req hypervisor.RevertRequest) error {
	defer v.hold()()
	// Like a copy received by a migration, the guest's agent channel is
	// left alone until the state is in.
	v.mu.Lock()
	v.incoming = true
	v.mu.Unlock()
	defer func() {
		v.mu.Lock()
		v.incoming = false
		runCtx, running := v.runCtx, v.qmp != nil
		v.mu.Unlock()
		if running {
			go v.pollGuest(runCtx)
		}
	}()
	// The saved state goes back into the hardware it was saved from.
	v.mu.Lock()
	hw := hypervisor.BootHardware(v.cfg)
	v.mu.Unlock()
	if req.Hardware != nil {
		hw = *req.Hardware
	}
	if err := v.launchHolding(ctx, hw, []string{"-incoming", "defer"}); err != nil {
		return fmt.Errorf("revert vm %s: %w", v.cfg.Name, err)
	}
	fail := func(err error) error {
		_ = v.powerOff(context.WithoutCancel(ctx))
		return fmt.Errorf("revert vm %s: restore its memory: %w", v.cfg.Name, err)
	}
	v.set(hypervisor.StateOn, "")
	if err := migration.RestoreMemory(ctx, v, req.MemoryFile); err != nil {
		return fail(err)
	}
	if req.Paused {
		v.set(hypervisor.StateSuspended, "")
		return nil
	}
	if err := v.command(ctx, "cont", nil); err != nil {
		return fail(err)
	}
	return nil
}

// Usage measures each disk: its active file, and the VM's older files of
// the same chain (those in the VM's own folder; a linked clone's base
// belongs to another).
func (d *Driver) Usage(ctx context.Context, id string) ([]hypervisor.DiskUsage, error) {
	v, err := d.get(id)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	disks := slices.Clone(v.cfg.Disks)
	v.mu.Unlock()
	return diskfile.MeasureChains(ctx, disks), nil
}

// RemoveFiles deletes disk files (and memory files) nothing uses.
func (d *Driver) RemoveFiles(ctx context.Context, paths []string) error {
	var errs []error
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// CopyDisk copies a file, or a running VM's disk as of now, into a new
// standalone qcow2 file.
func (d *Driver) CopyDisk(ctx context.Context, c hypervisor.DiskCopy, progress func(done, total int64)) (err error) {
	if _, err := os.Stat(c.Dst); err == nil {
		return fmt.Errorf("copy disk: %s already exists", c.Dst)
	}
	if err := os.MkdirAll(filepath.Dir(c.Dst), 0o755); err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	defer func() {
		if err != nil {
			_ = os.Remove(c.Dst)
		}
	}()
	src := c.File
	var v *vm
	if c.VM != "" {
		if v, err = d.get(c.VM); err != nil {
			return err
		}
		dc, err := v.disk(c.Disk)
		if err != nil {
			return err
		}
		src = dc.Path
	}
	info, err := disk.Inspect(ctx, src)
	if err != nil {
		return fmt.Errorf("copy disk: %w", err)
	}
	if err := diskfile.CheckRoom(filepath.Dir(c.Dst), info.ActualSize, "copy disk "+src); err != nil {
		return err
	}
	// Progress counts data, not the virtual size: a thin 20 GiB disk
	// holding 3 MiB copies 3 MiB. Both QEMU and qemu-img skip what was
	// never written; their share done is applied to the data there is.
	data := float64(diskfile.ChainData(ctx, src))
	share := func(f float64) {
		if progress != nil {
			progress(int64(min(f, 1)*data), int64(data))
		}
	}
	if v != nil && v.powerState() != hypervisor.StateOff {
		err = v.backup(ctx, c.Disk, c.Dst, info.VirtualSize, func(done, total int64) {
			share(float64(done) / float64(max(total, 1)))
		})
	} else {
		err = disk.ConvertProgress(ctx, src, info.Format, c.Dst, func(pct float64) { share(pct / 100) })
	}
	if err != nil {
		return err
	}
	if c.Size > info.VirtualSize {
		if err := disk.Resize(ctx, c.Dst, c.Size); err != nil {
			return err
		}
	}
	// The last word is what the copy really holds.
	if n, err := disk.Allocated(c.Dst); err == nil && progress != nil {
		progress(n, n)
	}
	return nil
}

// backup copies a running VM's disk as it is now (blockdev-backup
// sync=full: writes the guest makes meanwhile do not go into the copy).
func (v *vm) backup(ctx context.Context, diskName, dst string, size int64, progress func(done, total int64)) error {
	if err := disk.Create(ctx, dst, size); err != nil {
		return err
	}
	src, err := v.node(ctx, diskName)
	if err != nil {
		return err
	}
	tn := "bk-" + diskName
	job := "backup-" + diskName
	if err := v.command(ctx, "blockdev-add", map[string]any{"driver": "qcow2", "node-name": tn,
		"file": map[string]any{"driver": "file", "node-name": tn + "-file", "filename": dst}}); err != nil {
		return fmt.Errorf("copy disk %s: %w", diskName, err)
	}
	defer blockjob.Drop(v, tn)
	if err := v.command(ctx, "blockdev-backup", map[string]any{"job-id": job, "device": src, "target": tn, "sync": "full",
		"auto-dismiss": false}); err != nil {
		return fmt.Errorf("copy disk %s: %w", diskName, err)
	}
	return blockjob.Wait(ctx, v, job, func(j blockjob.Job) {
		if progress != nil {
			progress(j.Offset, j.Len)
		}
	})
}
