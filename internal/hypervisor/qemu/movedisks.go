package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
)

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
		if err := v.moveDisks(mctx, m, moves); err != nil {
			m.Fail(err)
			v.log.Warn("disk move failed", "vm", v.cfg.Name, "err", err)
		}
	}()
	return nil
}

// diskMove is one disk being moved: where it goes and the file it
// leaves.
type diskMove struct {
	mv  hypervisor.DiskMove
	old string
}

func (v *vm) moveDisks(ctx context.Context, m *migration.Job, moves []hypervisor.DiskMove) (err error) {
	m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationMirroring })
	var jobs []diskMove
	defer func() {
		if err == nil {
			return
		}
		for _, j := range jobs {
			_ = v.command(context.Background(), "block-job-cancel", map[string]any{"device": "move-" + j.mv.Name, "force": true})
			_ = v.command(context.Background(), "blockdev-del", map[string]any{"node-name": "move-" + j.mv.Name})
			_ = v.command(context.Background(), "blockdev-del", map[string]any{"node-name": "move-" + j.mv.Name + "-file"})
			_ = os.Remove(j.mv.Path)
		}
	}()
	var ids []string
	for _, mv := range moves {
		id, err := v.startMove(ctx, mv, &jobs)
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	if err := blockjob.WaitMirrors(ctx, v, ids, m.DiskProgress); err != nil {
		return err
	}
	if err := blockjob.CompleteMirrors(ctx, v, ids); err != nil {
		return err
	}
	v.switchDisks(jobs)
	jobs = nil
	m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCompleted })
	return nil
}

// startMove creates the new file of a disk and mirrors the disk into it;
// it records the move in jobs once the file exists, for the cleanup of a
// failed move.
func (v *vm) startMove(ctx context.Context, mv hypervisor.DiskMove, jobs *[]diskMove) (string, error) {
	var dc *hypervisor.DiskConfig
	for i := range v.cfg.Disks {
		if v.cfg.Disks[i].Name == mv.Name {
			dc = &v.cfg.Disks[i]
		}
	}
	if dc == nil {
		return "", fmt.Errorf("vm %s has no disk %s", v.cfg.Name, mv.Name)
	}
	info, err := disk.Inspect(ctx, dc.Path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(mv.Path), 0o755); err != nil {
		return "", err
	}
	if _, err := os.Stat(mv.Path); err == nil {
		return "", fmt.Errorf("disk %s: %s already exists", mv.Name, mv.Path)
	}
	if err := disk.Create(ctx, mv.Path, info.VirtualSize); err != nil {
		return "", err
	}
	*jobs = append(*jobs, diskMove{mv: mv, old: dc.Path})
	src, err := v.node(ctx, mv.Name)
	if err != nil {
		return "", err
	}
	id := "move-" + mv.Name
	if err := v.command(ctx, "blockdev-add", map[string]any{"driver": "qcow2", "node-name": id, "discard": "unmap",
		"file": map[string]any{"driver": "file", "node-name": id + "-file", "filename": mv.Path, "discard": "unmap"}}); err != nil {
		return "", err
	}
	if err := v.command(ctx, "blockdev-mirror", map[string]any{"job-id": id, "device": src, "target": id, "sync": "full"}); err != nil {
		return "", err
	}
	return id, nil
}

// switchDisks records the disks' new paths and removes the old files.
func (v *vm) switchDisks(jobs []diskMove) {
	v.mu.Lock()
	for _, j := range jobs {
		for i := range v.cfg.Disks {
			if v.cfg.Disks[i].Name == j.mv.Name {
				v.cfg.Disks[i].Path = j.mv.Path
			}
		}
	}
	v.mu.Unlock()
	for _, j := range jobs {
		_ = os.Remove(j.old)
		_ = os.Remove(filepath.Dir(j.old))
	}
}
