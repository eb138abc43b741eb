// Package diskfile is the qemu-img side of a VM's disk files, with no VM
// or QEMU process involved: making them (empty, thin or thick, from an
// image, as a linked clone), checking that a datastore has room for them,
// and measuring the chains of files behind them.
package diskfile

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

// CreateAll makes the VM's disks that do not exist yet. On failure it
// removes the ones it made, so a failed create leaves no half-made disk
// behind.
func CreateAll(ctx context.Context, cfg hypervisor.VMConfig) (err error) {
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
		if free, err := FreeBytes(filepath.Dir(dc.Path)); err == nil && free < 1<<20 {
			return fmt.Errorf("datastore is full (%s free)", api.Size(free))
		}
		if dc.Thick {
			if err := CheckRoom(filepath.Dir(dc.Path), dc.SizeBytes, "make thick disk "+dc.Name); err != nil {
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
	if free, err := FreeBytes(filepath.Dir(dc.Path)); err == nil && free < info.ActualSize+64<<20 {
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

// FreeBytes is the space left to unprivileged users in the file system of
// dir.
func FreeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// MakeEmpty creates an empty disk, thin or thick, unless it exists.
func MakeEmpty(ctx context.Context, dc hypervisor.DiskConfig) error {
	if _, err := os.Stat(dc.Path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dc.Path), 0o755); err != nil {
		return err
	}
	if dc.Thick {
		if err := CheckRoom(filepath.Dir(dc.Path), dc.SizeBytes, "make thick disk "+dc.Name); err != nil {
			return err
		}
		return disk.CreateThick(ctx, dc.Path, dc.SizeBytes)
	}
	return disk.Create(ctx, dc.Path, dc.SizeBytes)
}

// MeasureChains measures each disk: its active file, and the older files
// of the same chain in the same folder (the VM's own; a linked clone's
// base belongs to another). The chains are read from the qcow2 headers,
// not with qemu-img: this runs for every disk on every full heartbeat.
func MeasureChains(ctx context.Context, disks []hypervisor.DiskConfig) []hypervisor.DiskUsage {
	var out []hypervisor.DiskUsage
	for _, dc := range disks {
		u := hypervisor.DiskUsage{Name: dc.Name}
		h, err := disk.ReadHeader(dc.Path)
		if err != nil {
			continue
		}
		u.VirtualBytes = h.VirtualSize
		if u.AllocatedBytes, err = disk.Allocated(dc.Path); err != nil {
			continue
		}
		dir := filepath.Dir(dc.Path)
		for p, i := h.Backing, 0; p != "" && i < 256 && filepath.Dir(p) == dir; i++ {
			a, err := disk.Allocated(p)
			if err != nil {
				break
			}
			u.ChainBytes += a
			if h, err = disk.ReadHeader(p); err != nil {
				break
			}
			p = h.Backing
		}
		out = append(out, u)
	}
	return out
}

// ChainData is about the data a full copy of the disk at path holds: what
// its file and the files under it take (the copy flattens the chain).
func ChainData(ctx context.Context, path string) int64 {
	chain, err := disk.Chain(ctx, path)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range chain {
		n += e.ActualSize
	}
	return n
}

// CheckRoom refuses work that would fill a datastore: it needs need bytes
// and a margin.
func CheckRoom(dir string, need int64, what string) error {
	free, err := FreeBytes(dir)
	if err != nil {
		return nil
	}
	if margin := int64(64 << 20); free < need+margin {
		return fmt.Errorf("%s: the datastore has %s free and this needs %s: %w", what, api.Size(free), api.Size(need+margin), hypervisor.ErrNoSpace)
	}
	return nil
}
