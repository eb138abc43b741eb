package storage

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
)

// Snapshot switches the VM's disks to new overlays: for a VM that is off
// by making them with qemu-img, for one that runs with QMP's
// blockdev-snapshot in one transaction over all disks. With a memory file
// the VM is paused, its disks switched and its state saved, then it goes
// on: disks and memory are of the same instant.
func Snapshot(ctx context.Context, target VM, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error) {
	var res hypervisor.SnapshotResult
	v := vm{VM: target}
	if len(req.Overlays) == 0 {
		return res, fmt.Errorf("snapshot vm %s: no disks to snapshot: %w", v.Name(), hypervisor.ErrInvalid)
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
			v.SetDiskPath(s.name, s.overlay)
		}
		if req.MemoryFile != "" {
			res.Note = "the VM is off: there is no memory to save"
		}
		return res, nil
	}
	defer v.Hold()()
	if req.Quiesce {
		thaw, err := v.Freeze(ctx)
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
func (v vm) snapshotSwitches(ctx context.Context, overlays map[string]string) ([]snapSwitch, error) {
	var sws []snapSwitch
	for name, ov := range overlays {
		dc, err := v.Disk(name)
		if err != nil {
			return nil, fmt.Errorf("snapshot: %w", err)
		}
		if dc.Path == ov {
			continue // done before (a retried call)
		}
		if _, err := os.Stat(ov); err == nil {
			return nil, fmt.Errorf("snapshot vm %s: overlay %s already exists", v.Name(), ov)
		}
		info, err := disk.Inspect(ctx, dc.Path)
		if err != nil {
			return nil, fmt.Errorf("snapshot vm %s: %w", v.Name(), err)
		}
		sws = append(sws, snapSwitch{name, dc.Path, ov, info.VirtualSize})
	}
	slices.SortFunc(sws, func(a, b snapSwitch) int { return strings.Compare(a.name, b.name) })
	return sws, nil
}

// makeOverlays creates the overlay files, and returns how to remove them.
func (v vm) makeOverlays(ctx context.Context, sws []snapSwitch) (undo func(), err error) {
	var made []string
	undo = func() {
		for _, p := range made {
			_ = os.Remove(p)
		}
	}
	for _, s := range sws {
		if err := disk.CreateOverlayOn(ctx, s.overlay, s.old, "qcow2", s.size); err != nil {
			undo()
			return nil, fmt.Errorf("snapshot vm %s: %w", v.Name(), err)
		}
		made = append(made, s.overlay)
	}
	return undo, nil
}

// switchToOverlays opens the overlays in QEMU and switches the running
// VM's disks to them in one transaction, pausing the VM first when its
// memory is to be saved too (it stays paused then).
func (v vm) switchToOverlays(ctx context.Context, sws []snapSwitch, undo func(), pause bool, power string) error {
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
			return fmt.Errorf("snapshot vm %s: open overlay %s: %w", v.Name(), s.overlay, err)
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
			return fmt.Errorf("snapshot vm %s: pause: %w", v.Name(), err)
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
		return fmt.Errorf("snapshot vm %s: switch to the overlays: %w", v.Name(), err)
	}
	for _, s := range sws {
		v.SetDiskPath(s.name, s.overlay)
	}
	return nil
}

// snapshotMemory saves the paused VM's memory into file and lets it go on
// (a suspended VM stays paused). The disks switched already: when the
// save fails the snapshot stands without memory, and res says so.
func (v vm) snapshotMemory(ctx context.Context, file string, power string, res *hypervisor.SnapshotResult) {
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
	hw := v.Hardware()
	res.Hardware = &hw
}

// RevertOverlays creates the disks' new overlays on the snapshot's files
// (each disk's Source); a failure removes those it made.
func RevertOverlays(ctx context.Context, v VM, disks []hypervisor.DiskConfig) error {
	var made []string
	for _, dc := range disks {
		if _, err := os.Stat(dc.Path); err == nil {
			continue // made by an earlier try
		}
		info, err := disk.Inspect(ctx, dc.Source)
		if err != nil {
			return fmt.Errorf("revert vm %s: %w", v.Name(), err)
		}
		if err := disk.CreateOverlayOn(ctx, dc.Path, dc.Source, info.Format, max(dc.SizeBytes, info.VirtualSize)); err != nil {
			for _, p := range made {
				_ = os.Remove(p)
			}
			return fmt.Errorf("revert vm %s: %w", v.Name(), err)
		}
		made = append(made, dc.Path)
	}
	return nil
}
