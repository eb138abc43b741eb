package api

import "time"

// VMSnapshot is a point in time of a VM that it can go back to. Its disks
// are the files the VM used when it was taken, frozen: the VM went on in
// new thin overlays on top of them (external qcow2 snapshots, like
// vSphere's delta disks).
type VMSnapshot struct {
	// ID is the snapshot's for good; the tree refers to snapshots by ID.
	ID string `json:"id"`
	// Name is unique among the VM's snapshots (a deleted one's is free).
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// ParentID is the snapshot this one was taken after ("" for the first).
	ParentID string `json:"parentId,omitempty"`
	// PowerState is the VM's when the snapshot was taken.
	PowerState string `json:"powerState"`
	// Memory says the VM's RAM and device state were saved: a revert
	// brings the VM back running where it was.
	Memory bool `json:"memory,omitempty"`
	// MemoryPath is the saved state, relative to the first disk's datastore.
	MemoryPath string `json:"memoryPath,omitempty"`
	// Quiesced says the guest's file systems were frozen (through its
	// agent) while the disks were snapshotted.
	Quiesced bool `json:"quiesced,omitempty"`
	// CPUs and MemoryBytes are the VM's shape then; a revert restores them.
	CPUs        int  `json:"cpus"`
	MemoryBytes Size `json:"memoryBytes"`
	// Hardware, for a memory snapshot, is the hardware the saved state
	// runs on (hot-added vCPUs and memory included).
	Hardware *VMHardware `json:"hardware,omitempty"`
	// Disks are the VM's disks then, each with its frozen file.
	Disks []VMDisk `json:"disks"`
	// Hidden marks a snapshot that was deleted while its data still had
	// two branches on top of it: it is no longer listed and cannot be
	// reverted to, and its files merge away once one branch is gone.
	Hidden bool `json:"hidden,omitempty"`
}

// SnapshotCreateRequest is the body of POST /api/v1/vms/{vm}/snapshots.
type SnapshotCreateRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Memory saves the running VM's RAM and device state too.
	Memory bool `json:"memory,omitempty"`
	// Quiesce freezes the guest's file systems through its agent while
	// the disks are snapshotted (when the agent answers).
	Quiesce bool `json:"quiesce,omitempty"`
}

// SnapshotResult is the result of a vm.snapshot.* task.
type SnapshotResult struct {
	Snapshot string `json:"snapshot"`
	// Quiesced says whether the guest file systems were frozen; Note says
	// why not when quiescing was asked for.
	Quiesced bool   `json:"quiesced,omitempty"`
	Note     string `json:"note,omitempty"`
	// Merged lists the disk files merged away by a delete.
	Merged []string `json:"merged,omitempty"`
	// Kept says why a deleted snapshot's data stays for now.
	Kept string `json:"kept,omitempty"`
}

// CloneRequest is the body of POST /api/v1/vms/{vm}/clone, which also
// makes VMs from templates.
type CloneRequest struct {
	Name string `json:"name"`
	// Linked makes the new disks thin overlays on the source's frozen
	// files (a snapshot's or a template's): made in constant time, they
	// depend on them.
	Linked bool `json:"linked,omitempty"`
	// Snapshot clones the VM as it was at this snapshot.
	Snapshot  string `json:"snapshot,omitempty"`
	Host      string `json:"host,omitempty"`
	Datastore string `json:"datastore,omitempty"`
	// CPUs and Memory change the clone's shape (default: the source's).
	CPUs    int  `json:"cpus,omitempty"`
	Memory  Size `json:"memory,omitempty"`
	PowerOn bool `json:"powerOn,omitempty"`
	// CloudInit gives the clone its own cloud-init seed (default: the
	// source's, with the clone's own instance ID and host name).
	CloudInit   *CloudInit        `json:"cloudInit,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Description string            `json:"description,omitempty"`
	// Folder is the VM folder the clone goes in (a path, name or ID;
	// default: the source's).
	Folder string `json:"folder,omitempty"`
}

// CloneResult is the result of a vm.clone task.
type CloneResult struct {
	VM     Ref  `json:"vm"`
	Linked bool `json:"linked,omitempty"`
	// CopiedBytes is the data a full clone copied.
	CopiedBytes Size  `json:"copiedBytes,omitempty"`
	TookMs      int64 `json:"tookMs"`
}

// DiskAddRequest is the body of POST /api/v1/vms/{vm}/disks: a new empty
// disk, hot-plugged when the VM runs.
type DiskAddRequest struct {
	Size      Size   `json:"size"`
	Datastore string `json:"datastore,omitempty"`
	Bus       string `json:"bus,omitempty"`
	// Thick allocates the whole disk now (qcow2 preallocation=falloc).
	Thick bool `json:"thick,omitempty"`
}

// DiskResizeRequest is the body of PATCH /api/v1/vms/{vm}/disks/{disk}:
// disks only grow, live too.
type DiskResizeRequest struct {
	Size Size `json:"size"`
}

// CloudInit is what a NoCloud seed (a "cidata" ISO attached as a CD-ROM)
// gives a stock cloud image on its first boot.
type CloudInit struct {
	// UserData is the user's cloud-config or script, as is.
	UserData string `json:"userData,omitempty"`
	// SSHKeys are authorized for the image's default user.
	SSHKeys []string `json:"sshKeys,omitempty"`
	// Hostname defaults to the VM's name.
	Hostname string `json:"hostname,omitempty"`
}

// Limits of cloud-init seeds.
const (
	MaxUserData = 512 << 10
	MaxSSHKeys  = 32
)

// ImageImportRequest is the body of POST /api/v1/images/import: a disk
// image (qcow2 or raw, e.g. a cloud image) fetched by a host from a URL or
// copied from a file in a datastore (files elsewhere are uploaded: vdc
// image upload).
type ImageImportRequest struct {
	Name        string            `json:"name"`
	Source      string            `json:"source"` // http(s):// URL or absolute path of a file in a datastore
	Datastore   string            `json:"datastore,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// SHA256, when given, must match the fetched file.
	SHA256 string `json:"sha256,omitempty"`
}

// VMStorage sums a VM's disks (computed when read): what the guest sees,
// what was promised on the datastores, and what the files really take,
// snapshots included.
type VMStorage struct {
	CapacityBytes    Size `json:"capacityBytes"`
	ProvisionedBytes Size `json:"provisionedBytes"`
	AllocatedBytes   Size `json:"allocatedBytes"`
}

// Datastore space alarms, when its used space passes DatastoreWarnPercent
// and DatastoreCriticalPercent of its capacity.
const (
	DatastoreAlarmWarning  = "warning"
	DatastoreAlarmCritical = "critical"
	DatastoreWarnPercent   = 80
	DatastoreCritPercent   = 95
)

// EventDatastoreAlarm is sent when a datastore's alarm level changes.
const EventDatastoreAlarm = "datastore.alarm"

// copyStorage deep-copies the storage fields of a VM (DeepCopy).
func copyStorage(c, v *VM) {
	if v.Spec.CloudInit != nil {
		ci := *v.Spec.CloudInit
		ci.SSHKeys = append([]string(nil), v.Spec.CloudInit.SSHKeys...)
		c.Spec.CloudInit = &ci
	}
	if v.Spec.Snapshots != nil {
		c.Spec.Snapshots = make([]VMSnapshot, len(v.Spec.Snapshots))
		for i, s := range v.Spec.Snapshots {
			s.Disks = append([]VMDisk(nil), s.Disks...)
			if s.Hardware != nil {
				hw := s.Hardware.copy()
				s.Hardware = &hw
			}
			c.Spec.Snapshots[i] = s
		}
	}
	if v.Status.Storage != nil {
		st := *v.Status.Storage
		c.Status.Storage = &st
	}
}
