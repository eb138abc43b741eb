package sim

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

var _ hypervisor.Storage = (*Driver)(nil)

// simFile is a modeled disk file: what it holds and what backs it.
type simFile struct {
	Alloc   int64  `json:"alloc"`
	Size    int64  `json:"size"`
	Backing string `json:"backing,omitempty"`
}

// The storage model. Sim makes no files; each VM's record keeps a table of
// the files it would have, with their allocated bytes, so that thin
// provisioning, snapshots and clones account like real ones:
//
//   - a new thin disk holds the disk's share of LabelDiskUsed (what the
//     guest wrote), a thick one its whole size;
//   - an overlay (snapshot, linked clone, revert) starts empty: linked
//     clones are made in constant time whatever the base's size;
//   - a merge adds the top's bytes to its base; a full copy holds its
//     source chain's bytes and takes them over DefaultMigrationBandwidth.

// modeledAlloc is what a disk made at define time holds.
func modeledAlloc(cfg hypervisor.VMConfig, dc hypervisor.DiskConfig) int64 {
	if dc.Thick {
		return dc.SizeBytes
	}
	if dc.Linked {
		return 0
	}
	used, _ := labelSize(cfg, LabelDiskUsed)
	var all int64
	for _, d := range cfg.Disks {
		all += d.SizeBytes
	}
	if all == 0 {
		return 0
	}
	return int64(float64(used) * float64(dc.SizeBytes) / float64(all))
}

// modelFiles adds the files of disks the table does not have yet.
func modelFiles(rec *record) {
	if rec.Files == nil {
		rec.Files = map[string]simFile{}
	}
	for _, dc := range rec.Config.Disks {
		if _, ok := rec.Files[dc.Path]; !ok {
			f := simFile{Alloc: modeledAlloc(rec.Config, dc), Size: dc.SizeBytes}
			if dc.Linked {
				f.Backing = dc.Source
			}
			rec.Files[dc.Path] = f
		}
	}
}

// storageOp runs a change of a VM's record under mu and saves it.
func (d *Driver) storageOp(ctx context.Context, op, id string, change func(v *vm, rec *record) error) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	if err := v.notReceiving(); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	rec := v.rec
	rec.Config.Disks = slices.Clone(rec.Config.Disks)
	rec.Files = maps.Clone(rec.Files)
	modelFiles(&rec)
	if err := change(v, &rec); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	if err := d.commit(v, rec); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	return nil
}

func diskIdx(cfg hypervisor.VMConfig, name string) int {
	return slices.IndexFunc(cfg.Disks, func(d hypervisor.DiskConfig) bool { return d.Name == name })
}

// Snapshot switches the disks to empty overlays; a running VM's memory is
// modeled as a file of its memory size.
func (d *Driver) Snapshot(ctx context.Context, id string, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error) {
	var res hypervisor.SnapshotResult
	err := d.storageOp(ctx, "snapshot", id, func(v *vm, rec *record) error {
		if len(req.Overlays) == 0 {
			return fmt.Errorf("no disks to snapshot: %w", hypervisor.ErrInvalid)
		}
		for name, ov := range req.Overlays {
			i := diskIdx(rec.Config, name)
			if i < 0 {
				return fmt.Errorf("no disk %q: %w", name, hypervisor.ErrInvalid)
			}
			cur := rec.Config.Disks[i].Path
			if cur == ov {
				continue
			}
			rec.Files[ov] = simFile{Size: rec.Config.Disks[i].SizeBytes, Backing: cur}
			rec.Config.Disks[i].Path = ov
		}
		if req.MemoryFile != "" && rec.Power != hypervisor.StateOff {
			rec.Files[req.MemoryFile] = simFile{Alloc: rec.Config.MemoryBytes, Size: rec.Config.MemoryBytes}
			res.Memory = true
			hw := rec.hardware()
			res.Hardware = &hw
		}
		if req.Quiesce && rec.Power == hypervisor.StateOn {
			res.Quiesced = true
		}
		return nil
	})
	return res, err
}

// Revert turns the VM off, gives it empty overlays on the snapshot's
// files and, with saved memory, runs it again (paused if asked).
func (d *Driver) Revert(ctx context.Context, id string, req hypervisor.RevertRequest) error {
	return d.storageOp(ctx, "revert", id, func(v *vm, rec *record) error {
		if req.MemoryFile != "" {
			if _, ok := rec.Files[req.MemoryFile]; !ok {
				return fmt.Errorf("no saved memory %s", req.MemoryFile)
			}
		}
		now := d.now()
		if rec.Power != hypervisor.StateOff {
			rec.turnOff(now, "")
		}
		rec.Config.Disks = nil
		for _, dc := range req.Disks {
			if _, ok := rec.Files[dc.Path]; !ok {
				rec.Files[dc.Path] = simFile{Size: dc.SizeBytes, Backing: dc.Source}
			}
			dc.Source, dc.Linked = "", false
			rec.Config.Disks = append(rec.Config.Disks, dc)
		}
		if req.CPUs > 0 {
			rec.Config.CPUs, rec.Config.MemoryBytes = req.CPUs, req.MemoryBytes
		}
		if req.MemoryFile != "" {
			hw := hypervisor.BootHardware(rec.Config)
			if req.Hardware != nil {
				hw = *req.Hardware
			}
			rec.Power, rec.Since, rec.BootedAt, rec.Hardware = hypervisor.StateOn, now, now, &hw
			if req.Paused {
				rec.Power = hypervisor.StateSuspended
			}
		}
		return nil
	})
}

// MergeDisk adds Top's bytes to Base and puts Base in Top's place.
func (d *Driver) MergeDisk(ctx context.Context, id string, m hypervisor.DiskMerge) error {
	return d.storageOp(ctx, "merge disk of", id, func(v *vm, rec *record) error {
		top, ok := rec.Files[m.Top]
		if ok {
			base := rec.Files[m.Base]
			base.Alloc = min(base.Alloc+top.Alloc, max(base.Size, top.Size))
			base.Size = max(base.Size, top.Size)
			rec.Files[m.Base] = base
			delete(rec.Files, m.Top)
		}
		for p, f := range rec.Files {
			if f.Backing == m.Top {
				f.Backing = m.Base
				rec.Files[p] = f
			}
		}
		if m.Active {
			if i := diskIdx(rec.Config, m.Disk); i >= 0 {
				rec.Config.Disks[i].Path = m.Base
			}
		}
		return nil
	})
}

// chainAlloc sums a file and its backing files that the VM holds.
func chainAlloc(files map[string]simFile, p string) int64 {
	var n int64
	for i := 0; p != "" && i < 256; i++ {
		f, ok := files[p]
		if !ok {
			break
		}
		n += f.Alloc
		p = f.Backing
	}
	return n
}

// CopyDisk models a full copy: it takes the source's bytes over
// DefaultMigrationBandwidth, reporting progress, and the copy holds them.
func (d *Driver) CopyDisk(ctx context.Context, c hypervisor.DiskCopy, progress func(done, total int64)) error {
	var bytes, size int64
	var owner string
	d.mu.Lock()
	if _, ok := d.copies[c.Dst]; ok {
		d.mu.Unlock()
		return fmt.Errorf("copy disk: %s already exists", c.Dst)
	}
	for id, v := range d.vms {
		modelFiles(&v.rec)
		if _, ok := v.rec.Files[c.Dst]; ok {
			d.mu.Unlock()
			return fmt.Errorf("copy disk: %s already exists", c.Dst)
		}
		if c.VM != "" && id == c.VM {
			if i := diskIdx(v.rec.Config, c.Disk); i >= 0 {
				bytes, size = chainAlloc(v.rec.Files, v.rec.Config.Disks[i].Path), v.rec.Config.Disks[i].SizeBytes
				owner = id
			}
		} else if f, ok := v.rec.Files[c.File]; ok && c.File != "" {
			bytes, size, owner = chainAlloc(v.rec.Files, c.File), f.Size, id
		}
	}
	d.mu.Unlock()
	if owner == "" {
		return fmt.Errorf("copy disk: no such disk here: %w", hypervisor.ErrInvalid)
	}
	total := sendTime(bytes, DefaultMigrationBandwidth)
	start := time.Now()
	for {
		el := time.Since(start)
		if el >= total {
			break
		}
		if progress != nil {
			progress(int64(float64(bytes)*el.Seconds()/total.Seconds()), bytes)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(total-el, 100*time.Millisecond)):
		}
	}
	if progress != nil {
		progress(bytes, bytes)
	}
	// The copy belongs to the VM that will be defined on it: it is made
	// with that VM's definition (a disk whose file exists is kept).
	d.mu.Lock()
	d.copies[c.Dst] = simFile{Alloc: bytes, Size: max(size, c.Size)}
	d.mu.Unlock()
	return nil
}

// AddDisk adds a disk; SATA disks cannot be added to a running VM.
func (d *Driver) AddDisk(ctx context.Context, id string, dc hypervisor.DiskConfig) error {
	return d.storageOp(ctx, "add disk to", id, func(v *vm, rec *record) error {
		if diskIdx(rec.Config, dc.Name) >= 0 {
			return fmt.Errorf("it has a disk %q: %w", dc.Name, hypervisor.ErrInvalid)
		}
		if rec.Power != hypervisor.StateOff && dc.Bus == "sata" {
			return fmt.Errorf("SATA disks cannot be added while it runs: %w", hypervisor.ErrWrongState)
		}
		alloc := int64(0)
		if dc.Thick {
			alloc = dc.SizeBytes
		}
		rec.Files[dc.Path] = simFile{Alloc: alloc, Size: dc.SizeBytes}
		rec.Config.Disks = append(rec.Config.Disks, dc)
		return nil
	})
}

// ResizeDisk grows a disk.
func (d *Driver) ResizeDisk(ctx context.Context, id, name string, size int64) error {
	return d.storageOp(ctx, "resize disk of", id, func(v *vm, rec *record) error {
		i := diskIdx(rec.Config, name)
		if i < 0 {
			return fmt.Errorf("no disk %q: %w", name, hypervisor.ErrInvalid)
		}
		if size < rec.Config.Disks[i].SizeBytes {
			return fmt.Errorf("disk %s is %d bytes; disks only grow: %w", name, rec.Config.Disks[i].SizeBytes, hypervisor.ErrInvalid)
		}
		rec.Config.Disks[i].SizeBytes = size
		f := rec.Files[rec.Config.Disks[i].Path]
		f.Size = size
		if rec.Config.Disks[i].Thick {
			f.Alloc = size
		}
		rec.Files[rec.Config.Disks[i].Path] = f
		return nil
	})
}

// RemoveDisk drops a disk from the VM (its file stays).
func (d *Driver) RemoveDisk(ctx context.Context, id, name string) error {
	return d.storageOp(ctx, "remove disk of", id, func(v *vm, rec *record) error {
		i := diskIdx(rec.Config, name)
		if i < 0 {
			return fmt.Errorf("no disk %q: %w", name, hypervisor.ErrInvalid)
		}
		if rec.Power != hypervisor.StateOff && rec.Config.Disks[i].Bus == "sata" {
			return fmt.Errorf("SATA disks cannot be unplugged while it runs: %w", hypervisor.ErrWrongState)
		}
		rec.Config.Disks = slices.Delete(rec.Config.Disks, i, i+1)
		return nil
	})
}

// RemoveFiles forgets modeled files.
func (d *Driver) RemoveFiles(ctx context.Context, paths []string) error {
	if err := d.usable(ctx); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range d.vms {
		rec := v.rec
		changed := false
		for _, p := range paths {
			if _, ok := rec.Files[p]; ok {
				if !changed {
					rec.Files = maps.Clone(rec.Files)
				}
				delete(rec.Files, p)
				changed = true
			}
		}
		if changed {
			if err := d.commit(v, rec); err != nil {
				return err
			}
		}
	}
	for _, p := range paths {
		delete(d.copies, p)
	}
	return nil
}

// Usage reports the modeled files: the active one, and the VM's older
// files of each disk's chain.
func (d *Driver) Usage(ctx context.Context, id string) ([]hypervisor.DiskUsage, error) {
	if err := d.usable(ctx); err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return nil, err
	}
	files := maps.Clone(v.rec.Files)
	if files == nil {
		files = map[string]simFile{}
	}
	var out []hypervisor.DiskUsage
	for _, dc := range v.rec.Config.Disks {
		f, ok := files[dc.Path]
		if !ok {
			f = simFile{Alloc: modeledAlloc(v.rec.Config, dc), Size: dc.SizeBytes}
		}
		u := hypervisor.DiskUsage{Name: dc.Name, VirtualBytes: max(f.Size, dc.SizeBytes), AllocatedBytes: f.Alloc}
		dir := filepath.Dir(dc.Path)
		for p, i := f.Backing, 0; p != "" && i < 256; i++ {
			b, ok := files[p]
			if !ok {
				break
			}
			if filepath.Dir(p) == dir {
				u.ChainBytes += b.Alloc
			}
			p = b.Backing
		}
		out = append(out, u)
	}
	return out, nil
}

// adoptCopies gives a VM being defined the full copies made for it; the
// caller holds mu.
func (d *Driver) adoptCopies(rec *record) {
	for _, dc := range rec.Config.Disks {
		if f, ok := d.copies[dc.Path]; ok {
			if rec.Files == nil {
				rec.Files = map[string]simFile{}
			}
			rec.Files[dc.Path] = f
			delete(d.copies, dc.Path)
		}
	}
}
