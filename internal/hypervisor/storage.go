package hypervisor

import (
	"context"
	"errors"

	"github.com/vdc-project/vdc/api"
)

// ErrInvalid says a storage request makes no sense (a shrinking resize, a
// disk that is not there).
var ErrInvalid = errors.New("invalid request")

// ErrNoSpace says a datastore has no room for what was asked.
var ErrNoSpace = errors.New("not enough free space")

// Seed is a NoCloud cloud-init seed: the files of a "cidata" volume.
type Seed struct {
	MetaData   string `json:"metaData"`
	UserData   string `json:"userData,omitempty"`
	VendorData string `json:"vendorData,omitempty"`
}

// SnapshotRequest freezes a VM's disks: each goes on in a new overlay.
type SnapshotRequest struct {
	// Overlays maps each disk (name) to the new file the VM writes to from
	// now on; the disk's current file becomes the overlay's read-only
	// backing file. Disks not listed are not snapshotted.
	Overlays map[string]string `json:"overlays"`
	// MemoryFile, for a VM that runs, receives its RAM and device state.
	MemoryFile string `json:"memoryFile,omitempty"`
	// Quiesce freezes the guest file systems while the disks switch.
	Quiesce bool `json:"quiesce,omitempty"`
}

// SnapshotResult says what a snapshot holds.
type SnapshotResult struct {
	Memory   bool   `json:"memory"`
	Quiesced bool   `json:"quiesced"`
	Note     string `json:"note,omitempty"`
	// Hardware, with Memory, is the hardware the saved state runs on: a
	// revert builds the VM the same.
	Hardware *api.VMHardware `json:"hardware,omitempty"`
}

// RevertRequest puts a VM back to a snapshot: its disks become new
// overlays on the snapshot's frozen files and, with MemoryFile, it runs
// again from the saved state (paused when Paused).
type RevertRequest struct {
	Disks       []DiskConfig `json:"disks"` // Path: the new overlay; Source: the frozen file
	CPUs        int          `json:"cpus"`
	MemoryBytes int64        `json:"memoryBytes"`
	MemoryFile  string       `json:"memoryFile,omitempty"`
	Paused      bool         `json:"paused,omitempty"`
	// Hardware is the snapshot's, for its memory file (nil: the one
	// CPUs and MemoryBytes boot with).
	Hardware *api.VMHardware `json:"hardware,omitempty"`
}

// DiskMerge merges one disk file into its backing file (a qcow2 commit):
// Top's data goes into Base, the files backed by Top (Children) are made
// to point at Base, and Top is removed. Base then takes Top's place.
type DiskMerge struct {
	Disk     string   `json:"disk"`
	Top      string   `json:"top"`
	Base     string   `json:"base"`
	Children []string `json:"children,omitempty"`
	// Active says Top is the file the disk writes to now.
	Active bool `json:"active,omitempty"`
	// Live says Top is in the chain the running VM has open.
	Live bool `json:"live,omitempty"`
}

// DiskCopy copies a disk into a new standalone file (a full clone). From
// a running VM's disk (VM and Disk set) it is a point-in-time copy taken
// while the guest runs; else File is copied.
type DiskCopy struct {
	VM   string `json:"vm,omitempty"`
	Disk string `json:"disk,omitempty"`
	File string `json:"file,omitempty"`
	Dst  string `json:"dst"`
	// Size, when larger than the source's, grows the copy.
	Size int64 `json:"size,omitempty"`
}

// DiskUsage is what one disk takes on its datastore.
type DiskUsage struct {
	Name         string `json:"name"`
	VirtualBytes int64  `json:"virtualBytes"`
	// AllocatedBytes is the active file's; ChainBytes the VM's older
	// files of the same disk (kept for snapshots).
	AllocatedBytes int64 `json:"allocatedBytes"`
	ChainBytes     int64 `json:"chainBytes"`
}

// Storage is implemented by drivers that manage disk chains: external
// snapshots, merges, copies, and disks added, grown and removed, on
// running VMs too. Paths are absolute paths on the host.
type Storage interface {
	// Snapshot switches the VM's disks to new overlays, atomically over
	// its disks, saving its memory first when asked (the VM is paused
	// meanwhile, so disks and memory match).
	Snapshot(ctx context.Context, id string, req SnapshotRequest) (SnapshotResult, error)
	// Revert replaces the VM's disks with new overlays on a snapshot's
	// files, powering it off first; with a memory file it runs again.
	Revert(ctx context.Context, id string, req RevertRequest) error
	// MergeDisk performs one merge. It is idempotent: called again after
	// an interruption (agent or QEMU killed) it finishes or redoes it.
	MergeDisk(ctx context.Context, id string, m DiskMerge) error
	// CopyDisk makes a standalone copy, reporting progress in bytes of
	// data (what a thin disk holds, not its virtual size); the last report
	// is what the copy holds.
	CopyDisk(ctx context.Context, c DiskCopy, progress func(done, total int64)) error
	// AddDisk makes a disk file (unless it exists) and hot-plugs it into
	// a running VM.
	AddDisk(ctx context.Context, id string, d DiskConfig) error
	// ResizeDisk grows a disk, live when the VM runs.
	ResizeDisk(ctx context.Context, id, disk string, size int64) error
	// RemoveDisk unplugs a disk from the VM (its files stay).
	RemoveDisk(ctx context.Context, id, disk string) error
	// RemoveFiles deletes disk files no VM uses any more.
	RemoveFiles(ctx context.Context, paths []string) error
	// Usage measures the VM's disks.
	Usage(ctx context.Context, id string) ([]DiskUsage, error)
}
