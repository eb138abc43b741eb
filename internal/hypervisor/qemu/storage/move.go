package storage

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

// diskMove is one disk being moved: where it goes and the file it
// leaves.
type diskMove struct {
	mv  hypervisor.DiskMove
	old string
}

// MoveDisks mirrors the running VM's disks to new files and switches
// over, reporting its progress in m; a failure leaves the VM on its
// old files and removes the new ones.
func MoveDisks(ctx context.Context, target VM, m *migration.Job, moves []hypervisor.DiskMove) (err error) {
	v := vm{VM: target}
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
func (v vm) startMove(ctx context.Context, mv hypervisor.DiskMove, jobs *[]diskMove) (string, error) {
	dc, err := v.Disk(mv.Name)
	if err != nil {
		return "", fmt.Errorf("vm %s has no disk %s", v.Name(), mv.Name)
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
func (v vm) switchDisks(jobs []diskMove) {
	for _, j := range jobs {
		v.SetDiskPath(j.mv.Name, j.mv.Path)
	}
	for _, j := range jobs {
		_ = os.Remove(j.old)
		_ = os.Remove(filepath.Dir(j.old))
	}
}
