package qemu

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/diskfile"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/storage"
)

var _ hypervisor.Storage = (*Driver)(nil)

// The disk operations (package storage) work on a vm through these
// methods.
var _ storage.VM = (*vm)(nil)

func (v *vm) Name() string      { return v.cfg.Name }
func (v *vm) Dir() string       { return v.cfg.Dir }
func (v *vm) Log() *slog.Logger { return v.log }

// Hardware is the running QEMU's hardware.
func (v *vm) Hardware() api.VMHardware {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.hw
}

// HasQEMU says whether the VM has a running QEMU.
func (v *vm) HasQEMU() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.qmp != nil
}

// Hold keeps QEMU's STOP and RESUME events from being read as the VM
// being suspended or resumed while a storage operation pauses it itself.
func (v *vm) Hold() func() {
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
func (v *vm) powerState() string { return v.State().Power }

func (v *vm) diskIndex(name string) int {
	return slices.IndexFunc(v.cfg.Disks, func(d hypervisor.DiskConfig) bool { return d.Name == name })
}

// SetDiskPath records a disk's new active file.
func (v *vm) SetDiskPath(name, path string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if i := v.diskIndex(name); i >= 0 {
		v.cfg.Disks[i].Path = path
	}
}

// Disk is the VM's disk of that name.
func (v *vm) Disk(name string) (hypervisor.DiskConfig, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	i := v.diskIndex(name)
	if i < 0 {
		return hypervisor.DiskConfig{}, fmt.Errorf("vm %s has no disk %s: %w", v.cfg.Name, name, hypervisor.ErrInvalid)
	}
	return v.cfg.Disks[i], nil
}

// Snapshot switches the VM's disks to new overlays (see storage.Snapshot).
func (d *Driver) Snapshot(ctx context.Context, id string, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.SnapshotResult{}, err
	}
	return storage.Snapshot(ctx, v, req)
}

// Freeze asks the guest agent to freeze the guest's file systems, and
// returns how to thaw them.
func (v *vm) Freeze(ctx context.Context) (func(), error) { return v.guest.Freeze(ctx) }

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
	if err := storage.RevertOverlays(ctx, v, req.Disks); err != nil {
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

// restoreMemory starts the reverted VM from its saved state, running or
// paused as it was saved.
func (v *vm) restoreMemory(ctx context.Context, req hypervisor.RevertRequest) error {
	defer v.Hold()()
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
			go v.guest.Poll(runCtx)
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
	v.SetPower(hypervisor.StateOn, "")
	if err := migration.RestoreMemory(ctx, v, req.MemoryFile); err != nil {
		return fail(err)
	}
	if req.Paused {
		v.SetPower(hypervisor.StateSuspended, "")
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
// standalone qcow2 file (see storage.Copy).
func (d *Driver) CopyDisk(ctx context.Context, c hypervisor.DiskCopy, progress func(done, total int64)) error {
	find := func(id string) (storage.VM, error) {
		v, err := d.get(id)
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	return storage.Copy(ctx, c, find, progress)
}

// MergeDisk merges Top into Base (see storage.Merge).
func (d *Driver) MergeDisk(ctx context.Context, id string, m hypervisor.DiskMerge) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	return storage.Merge(ctx, v, m, d.opt.MergeBandwidth)
}

// unfinishedMerge names a disk whose merge was interrupted, if any.
func (v *vm) unfinishedMerge() string { return storage.UnfinishedMerge(v.cfg.Dir) }

// refuseUnfinished keeps a VM with an interrupted merge from starting.
func (v *vm) refuseUnfinished() error {
	if u := v.unfinishedMerge(); u != "" {
		return fmt.Errorf("vm %s has an unfinished disk merge of %s; delete the snapshot again to finish it: %w",
			v.cfg.Name, strings.TrimSpace(u), hypervisor.ErrWrongState)
	}
	return nil
}

// MoveDisks mirrors a running VM's disks to new files and switches over.
func (d *Driver) MoveDisks(ctx context.Context, id string, moves []hypervisor.DiskMove) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("move the disks of", hypervisor.StateOn, hypervisor.StateSuspended); err != nil {
		return err
	}
	if err := v.refuseUnfinished(); err != nil {
		return err
	}
	m, err := v.newMigration()
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	m.Cancel = cancel
	go func() {
		defer close(m.Done)
		defer cancel()
		if err := storage.MoveDisks(mctx, v, m, moves); err != nil {
			m.Fail(err)
			v.log.Warn("disk move failed", "vm", v.cfg.Name, "err", err)
		}
	}()
	return nil
}
