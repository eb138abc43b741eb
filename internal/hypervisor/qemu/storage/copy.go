package storage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/blockjob"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/diskfile"
)

// Copy copies a file, or a running VM's disk as of now, into a new
// standalone qcow2 file: with QMP's blockdev-backup while the VM runs,
// with qemu-img when it does not. find looks the VM up (c.VM).
func Copy(ctx context.Context, c hypervisor.DiskCopy, find func(id string) (VM, error), progress func(done, total int64)) (err error) {
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
	var v vm
	if c.VM != "" {
		if v.VM, err = find(c.VM); err != nil {
			return err
		}
		dc, err := v.Disk(c.Disk)
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
	if v.VM != nil && v.powerState() != hypervisor.StateOff {
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
func (v vm) backup(ctx context.Context, diskName, dst string, size int64, progress func(done, total int64)) error {
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
