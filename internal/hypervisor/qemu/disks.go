package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// checkFiles makes sure the files a VM boots from exist.
func (d *Driver) checkFiles(cfg hypervisor.VMConfig) error {
	var need []string
	if cfg.Boot != nil {
		need = append(need, cfg.Boot.Kernel)
		if cfg.Boot.Initrd != "" {
			need = append(need, cfg.Boot.Initrd)
		}
	}
	if cfg.CDROM != "" {
		need = append(need, cfg.CDROM)
	}
	for _, f := range need {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("boot file: %w", err)
		}
		if fi.IsDir() {
			return fmt.Errorf("boot file %s is a directory", f)
		}
	}
	return nil
}

// createDisks makes the disks that do not exist yet. On failure it removes
// the ones it made, so a failed create leaves no half-made disk behind.
func (d *Driver) createDisks(ctx context.Context, cfg hypervisor.VMConfig) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for _, p := range made {
				_ = os.Remove(p)
				_ = os.Remove(filepath.Dir(p))
			}
		}
	}()
	for _, dc := range cfg.Disks {
		if _, serr := os.Stat(dc.Path); serr == nil {
			continue // made by an earlier define
		}
		dir := filepath.Dir(dc.Path)
		if _, serr := os.Stat(filepath.Dir(dir)); serr != nil {
			return fmt.Errorf("disk %s: datastore directory %s: %w", dc.Name, filepath.Dir(dir), serr)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("disk %s: %w", dc.Name, err)
		}
		made = append(made, dc.Path)
		if err := makeDisk(ctx, dc); err != nil {
			return fmt.Errorf("disk %s: %w", dc.Name, err)
		}
	}
	return nil
}

func makeDisk(ctx context.Context, dc hypervisor.DiskConfig) error {
	if dc.Source == "" {
		if free, err := freeBytes(filepath.Dir(dc.Path)); err == nil && free < 1<<20 {
			return fmt.Errorf("datastore is full (%s free)", api.Size(free))
		}
		if dc.Thick {
			if err := checkRoom(filepath.Dir(dc.Path), dc.SizeBytes, "make thick disk "+dc.Name); err != nil {
				return err
			}
			return disk.CreateThick(ctx, dc.Path, dc.SizeBytes)
		}
		return disk.Create(ctx, dc.Path, dc.SizeBytes)
	}
	if _, err := os.Stat(dc.Source); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("image %s does not exist", dc.Source)
	}
	var info disk.Info
	var err error
	if dc.Own {
		// One of vdc's own files (a snapshot, a template's or a VM's
		// disk): its backing chain is expected, and a linked clone's base
		// is not checked again (that would make linking cost its size).
		info, err = disk.Inspect(ctx, dc.Source)
	} else {
		// A foreign image: the format comes from the content, checked for
		// what would make qemu-img open other files (backing files, stray
		// VMDK extents); a fixed VHD, which qemu-img would take for raw,
		// is read as VHD.
		var det disk.Detected
		if det, err = disk.DetectFile(dc.Source); err == nil {
			info, err = disk.InspectSource(ctx, disk.Source{Path: dc.Source, Format: det.Format})
			info.Format = det.Format
		}
	}
	if err != nil {
		return fmt.Errorf("image %s: %w", dc.Source, err)
	}
	if info.Format == "qcow2" && !(dc.Own && dc.Linked) {
		if err := disk.Check(ctx, dc.Source); err != nil {
			return fmt.Errorf("image %s is damaged: %w", dc.Source, err)
		}
	}
	size := max(dc.SizeBytes, info.VirtualSize)
	if dc.Linked {
		return disk.CreateOverlay(ctx, dc.Path, dc.Source, info.Format, size)
	}
	// A copy needs the image's data in free space (with room to spare).
	if free, err := freeBytes(filepath.Dir(dc.Path)); err == nil && free < info.ActualSize+64<<20 {
		return fmt.Errorf("datastore has %s free; copying image %s needs %s", api.Size(free), dc.Source, api.Size(info.ActualSize+64<<20))
	}
	if err := disk.Convert(ctx, dc.Source, info.Format, dc.Path); err != nil {
		return err
	}
	if size > info.VirtualSize {
		return disk.Resize(ctx, dc.Path, size)
	}
	return nil
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}
