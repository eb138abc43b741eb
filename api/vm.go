package api

import (
	"maps"
	"slices"
	"time"
)

// Power states of a VM. Unknown means its host is not connected, so nobody
// can tell.
const (
	PowerOff       = "off"
	PowerOn        = "on"
	PowerSuspended = "suspended"
	PowerUnknown   = "unknown"
)

// Phases of a VM's life in the inventory.
const (
	PhaseCreating = "creating"
	PhaseReady    = "ready"
	PhaseDeleting = "deleting"
)

// VM is a virtual machine.
type VM struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     VMSpec     `json:"spec"`
	Status   VMStatus   `json:"status"`
}

type VMSpec struct {
	Cluster Ref `json:"cluster"`
	Host    Ref `json:"host"`
	// Folder is the VM folder the VM is in (none: its datacenter's top
	// level); answers name it by its path ("/web/prod").
	Folder      Ref      `json:"folder,omitzero"`
	CPUs        int      `json:"cpus"`
	MemoryBytes Size     `json:"memoryBytes"`
	Disks       []VMDisk `json:"disks"`
	NICs        []VMNIC  `json:"nics"`
	Description string   `json:"description,omitempty"`
	// Image is the image the VM was made from, if any.
	Image Ref `json:"image,omitzero"`
	// Boot, for VMs made from a kernel image, boots its kernel directly.
	Boot *VMBoot `json:"boot,omitempty"`
	// CDROM is the path of an ISO image in a datastore, attached as a
	// CD-ROM and booted first.
	CDROM string `json:"cdrom,omitempty"`
	// MaxCPUs turns on CPU hot-add (vSphere's "CPU Hot Add"): a running
	// VM can grow to this many vCPUs. 0: off, CPUs change only while the
	// VM is off. Changed only while the VM is off.
	MaxCPUs int `json:"maxCpus,omitempty"`
	// MaxMemoryBytes turns on memory hot-add (vSphere's "Memory Hot
	// Plug"): a running VM can grow to this much memory, in steps of
	// MemoryHotplugStep. 0: off. Changed only while the VM is off.
	MaxMemoryBytes Size `json:"maxMemoryBytes,omitempty"`
	// VNC gives the VM a VNC display. It is reached only through the
	// server (GET /api/v1/vms/{vm}/vnc; vdc vm console --vnc): QEMU
	// serves it on a unix socket of the host, never on a TCP port.
	// Changed while the VM runs, it applies at its next power-on.
	VNC bool `json:"vnc,omitempty"`
	// HAPriority orders HA restarts: high, medium (the default), low, or
	// disabled (not restarted, not fenced).
	HAPriority string `json:"haPriority,omitempty"`
	// CloudInit, when set, attaches a NoCloud seed ("cidata" CD-ROM).
	CloudInit *CloudInit `json:"cloudInit,omitempty"`
	// Template marks a VM that is only cloned from: it never runs, and
	// its disks are read-only bases for linked clones.
	Template bool `json:"template,omitempty"`
	// Snapshots is the VM's snapshot tree; CurrentSnapshotID is the ID of
	// the one its current state descends from.
	Snapshots         []VMSnapshot `json:"snapshots,omitempty"`
	CurrentSnapshotID string       `json:"currentSnapshotId,omitempty"`
}

// VMBoot is a direct kernel boot from an image's files.
type VMBoot struct {
	Kernel  string `json:"kernel"` // path relative to the image's datastore
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

// Disk buses.
const (
	BusVirtio = "virtio"
	BusSCSI   = "scsi"
	BusSATA   = "sata"
)

type VMDisk struct {
	Name      string `json:"name"` // disk0, disk1...
	SizeBytes Size   `json:"sizeBytes"`
	Datastore Ref    `json:"datastore"`
	Bus       string `json:"bus"`
	// Path of the disk file relative to the datastore's directory.
	Path string `json:"path"`
	// Source is the absolute path of the file the disk was made from
	// (copied, or with Linked the read-only base of a thin overlay).
	Source string `json:"source,omitempty"`
	Linked bool   `json:"linked,omitempty"`
	// ForeignSource says Source is a file the user named (vm create
	// --image PATH), not one vdc made or checked: the host checks it as a
	// foreign image (no backing files, no stray extents) when it makes the
	// disk, though it lies on a datastore.
	ForeignSource bool `json:"foreignSource,omitempty"`
	// Thick disks are allocated in full when made.
	Thick bool `json:"thick,omitempty"`
	// Slot is the spare PCIe root port a virtio disk hot-plugged into a
	// running VM sits in: it stays there, so that the VM's next start and
	// a live migration's target lay the devices out as the guest has them.
	Slot string `json:"slot,omitempty"`
}

type VMNIC struct {
	Name      string `json:"name"` // nic0, nic1...
	PortGroup Ref    `json:"portGroup"`
	MAC       string `json:"mac"`
	Model     string `json:"model"`
	// IPv4 is the NIC's address on a port group with DHCP, given when the
	// NIC was made.
	IPv4 string `json:"ipv4,omitempty"`
	// LinkDown: the virtual cable is unplugged.
	LinkDown bool `json:"linkDown,omitempty"`
	// Slot is the spare PCIe root port a NIC hot-plugged into a running
	// VM sits in (shared with disks, see VMDisk.Slot): it stays there, so
	// that the next start and a live migration's target lay the devices
	// out as the guest has them.
	Slot string `json:"slot,omitempty"`
}

type VMStatus struct {
	Phase      string `json:"phase"`
	PowerState string `json:"powerState"`
	// LastKnownPowerState is the last state the host reported, kept while
	// PowerState is unknown.
	LastKnownPowerState string    `json:"lastKnownPowerState,omitempty"`
	PowerChanged        time.Time `json:"powerChanged,omitzero"`
	Message             string    `json:"message,omitempty"`
	// StateSeq orders the host's reports of this VM's state so that an old
	// report never overwrites a newer one.
	StateSeq uint64 `json:"stateSeq,omitempty"`
	// Guest is what the VM's guest agent tells (real VMs).
	Guest *GuestInfo `json:"guest,omitempty"`
	// Disks holds each disk's allocated bytes, as the host measured them.
	Disks []DiskStatus `json:"disks,omitempty"`
	// VNC is where the running VM's display is served on its host
	// ("unix:PATH"; reach it with vdc vm console --vnc). Empty when the
	// running VM has none, whatever the spec says.
	VNC string `json:"vnc,omitempty"`
	// HAResets are the times VM monitoring reset the VM, within the
	// cluster's reset window.
	HAResets []time.Time `json:"haResets,omitempty"`
	// Storage sums the disks (computed when read).
	Storage *VMStorage `json:"storage,omitempty"`
	// NICs names each NIC's tap device on the host (computed when read).
	NICs []NICStatus `json:"nics,omitempty"`
}

// Guest agent states.
const (
	GuestRunning       = "running"
	GuestNotRunning    = "not-running"
	GuestNotResponding = "not-responding"
	GuestNotInstalled  = "not-installed"
)

// GuestInfo is what qemu-guest-agent tells of the guest.
type GuestInfo struct {
	// State: running (it answers), not-running (it has not answered yet
	// since the guest started: booting), not-responding (it answered
	// before, not any more), not-installed (no answer in the guest's
	// first minutes).
	State       string    `json:"state"`
	OS          string    `json:"os,omitempty"`
	Kernel      string    `json:"kernel,omitempty"`
	Hostname    string    `json:"hostname,omitempty"`
	IPAddresses []string  `json:"ipAddresses,omitempty"`
	LastSeen    time.Time `json:"lastSeen,omitzero"`
}

// DiskStatus is what a host measured of one disk.
type DiskStatus struct {
	Name           string `json:"name"`
	AllocatedBytes Size   `json:"allocatedBytes"`
	// VirtualBytes is the disk's size as the guest sees it (measured when
	// the disk is made; a disk made from an image takes the image's size).
	VirtualBytes Size `json:"virtualBytes,omitempty"`
	// SnapshotBytes is what the disk's older files, kept for its
	// snapshots, take on top of AllocatedBytes.
	SnapshotBytes Size `json:"snapshotBytes,omitempty"`
}

func (o *VM) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *VM) Kind() string         { return KindVM }

// Limits on what one VM may ask for.
const (
	MaxVMCPUs      = 512
	MaxVMMemory    = Size(16 << 40) // 16 TiB
	MaxDiskSize    = Size(64 << 40) // 64 TiB, near qcow2's practical limit
	MinVMMemory    = Size(1 << 20)  // 1 MiB
	MaxDisksPerVM  = 32
	MaxNICsPerVM   = 16
	MaxDescription = 1024
	// MemoryHotplugStep is the unit of memory hot-add: a guest uses
	// hot-added memory in blocks of this size (Linux on x86-64).
	MemoryHotplugStep = Size(128 << 20)
	// MaxMemoryHotAdds is how many times memory can be hot-added to a VM
	// between two power-ons (one DIMM slot each).
	MaxMemoryHotAdds = 16
)

// VMHardware is the virtual hardware of a running VM's QEMU: what it was
// started with and what was hot-added since. A copy that receives the
// VM's state (a live migration's target, a revert to a memory snapshot)
// must be built the same, whatever the spec says by then.
type VMHardware struct {
	// CPUs and MemoryBytes are what the process started with.
	CPUs           int  `json:"cpus"`
	MaxCPUs        int  `json:"maxCpus,omitempty"`
	MemoryBytes    Size `json:"memoryBytes"`
	MaxMemoryBytes Size `json:"maxMemoryBytes,omitempty"`
	// HotCPUs are the vCPUs added since, in order.
	HotCPUs []HotCPU `json:"hotCpus,omitempty"`
	// DIMMs are the memory added since, a DIMM each.
	DIMMs []Size `json:"dimms,omitempty"`
	VNC   bool   `json:"vnc,omitempty"`
	// NICPorts are the NICs (by name) that had a PCIe root port of their
	// own when the process started, so that they can be unplugged while
	// it runs; the ports stay, empty, when their NICs go. None: a QEMU
	// started by a vdc that put NICs on the root bus (no hot-unplug).
	NICPorts []string `json:"nicPorts,omitempty"`
}

// HotCPU is one hot-added vCPU: its device ID, type and place in the
// CPU topology, as the hypervisor reported them.
type HotCPU struct {
	ID    string         `json:"id"`
	Type  string         `json:"type"`
	Props map[string]int `json:"props"`
}

func (h VMHardware) copy() VMHardware {
	h.DIMMs = slices.Clone(h.DIMMs)
	h.NICPorts = slices.Clone(h.NICPorts)
	if h.HotCPUs != nil {
		cpus := make([]HotCPU, len(h.HotCPUs))
		for i, c := range h.HotCPUs {
			c.Props = maps.Clone(c.Props)
			cpus[i] = c
		}
		h.HotCPUs = cpus
	}
	return h
}

// TotalCPUs is how many vCPUs the VM has now.
func (h VMHardware) TotalCPUs() int { return h.CPUs + len(h.HotCPUs) }

// TotalMemory is how much memory the VM has now.
func (h VMHardware) TotalMemory() Size {
	m := h.MemoryBytes
	for _, d := range h.DIMMs {
		m += d
	}
	return m
}

// VMResizeResult is the result of a vm.hot-add task.
type VMResizeResult struct {
	CPUs        int  `json:"cpus"`
	MemoryBytes Size `json:"memoryBytes"`
	// Message says what was added and what the guest made of it.
	Message string `json:"message"`
}

// VMCreateRequest is the body of POST /api/v1/vms.
type VMCreateRequest struct {
	Name    string        `json:"name"`
	Cluster string        `json:"cluster,omitempty"` // name or ID; default: the only cluster, or the host's
	Host    string        `json:"host,omitempty"`    // default: placement picks one
	CPUs    int           `json:"cpus"`
	Memory  Size          `json:"memory"`
	Disks   []DiskRequest `json:"disks,omitempty"`
	// NICs: null (absent) gives one NIC on the datacenter's only port group, if
	// there is exactly one; [] gives none.
	NICs        []NICRequest      `json:"nics"`
	Labels      map[string]string `json:"labels,omitempty"`
	Description string            `json:"description,omitempty"`
	// PowerOn starts the VM once it is created.
	PowerOn bool `json:"powerOn,omitempty"`
	// Image is a registered image (a kernel image such as "test", or a disk
	// image), or the absolute path of a disk file (qcow2, raw...) in a
	// datastore of the VM's datacenter. A disk image becomes the first
	// disk: copied, or with Linked a thin overlay on it.
	Image  string `json:"image,omitempty"`
	Linked bool   `json:"linked,omitempty"`
	// CDROM is the absolute path of an ISO image in a datastore of the
	// VM's datacenter.
	CDROM string `json:"cdrom,omitempty"`
	VNC   bool   `json:"vnc,omitempty"`
	// MaxCPUs and MaxMemory turn on CPU and memory hot-add up to them
	// (0: off).
	MaxCPUs   int  `json:"maxCpus,omitempty"`
	MaxMemory Size `json:"maxMemory,omitempty"`
	// HAPriority: high, medium (default), low or disabled.
	HAPriority string `json:"haPriority,omitempty"`
	// CloudInit attaches a NoCloud seed for cloud images.
	CloudInit *CloudInit `json:"cloudInit,omitempty"`
	// FromTemplate makes the VM a clone of a template (Linked: a linked
	// clone); its shape is the template's unless CPUs or Memory are given.
	FromTemplate string `json:"fromTemplate,omitempty"`
	// Folder is the VM folder it goes in, in its cluster's datacenter: a
	// path ("/web/prod"), a name or an ID; default: the top level.
	Folder string `json:"folder,omitempty"`
}

type DiskRequest struct {
	Size      Size   `json:"size"`
	Datastore string `json:"datastore,omitempty"` // default: the only datastore the cluster sees
	Bus       string `json:"bus,omitempty"`       // default virtio
	Thick     bool   `json:"thick,omitempty"`     // allocate it in full now
}

type NICRequest struct {
	PortGroup string `json:"portGroup"`
	MAC       string `json:"mac,omitempty"`   // default: generated, unique in the datacenter
	Model     string `json:"model,omitempty"` // default virtio
}

// VMUpdateRequest is the body of PATCH /api/v1/vms/{vm}; absent fields stay.
// CPUs and memory change freely while the VM is off; while it runs they
// only grow, up to MaxCPUs and MaxMemory (hot-add, a vm.hot-add task).
// MaxCPUs and MaxMemory change only while it is off; VNC applies at the
// next power-on.
type VMUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	CPUs        *int              `json:"cpus,omitempty"`
	Memory      *Size             `json:"memory,omitempty"`
	MaxCPUs     *int              `json:"maxCpus,omitempty"`
	MaxMemory   *Size             `json:"maxMemory,omitempty"`
	VNC         *bool             `json:"vnc,omitempty"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	HAPriority  *string           `json:"haPriority,omitempty"`
}

// Power actions for POST /api/v1/vms/{vm}/power.
const (
	ActionStart   = "start"
	ActionStop    = "stop"
	ActionReset   = "reset"
	ActionSuspend = "suspend"
	ActionResume  = "resume"
)

// DefaultStopTimeout is how long a graceful stop waits for the guest before
// powering it off.
const DefaultStopTimeout = 60 * time.Second

type PowerRequest struct {
	Action string `json:"action"`
	// Force on stop powers off at once instead of asking the guest.
	Force bool `json:"force,omitempty"`
	// TimeoutSeconds bounds a graceful stop (default 60) before power-off.
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// ExecRequest is the body of POST /api/v1/vms/{vm}/exec: run a program in
// the guest through its agent.
type ExecRequest struct {
	Command []string `json:"command"` // program and arguments
	Input   string   `json:"input,omitempty"`
	// TimeoutSeconds bounds the run (default 60, at most 3600).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// ExecResult is how the program ended.
type ExecResult struct {
	ExitCode  int    `json:"exitCode"`
	Signal    int    `json:"signal,omitempty"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	Truncated bool   `json:"truncated,omitempty"`
}

// MigrateRequest is the body of POST /api/v1/vms/{vm}/migrate: move a VM
// to another host (Host), its disks to another datastore (Datastore), or
// both. A running VM moves live; a powered-off one is re-registered.
type MigrateRequest struct {
	Host      string `json:"host,omitempty"`
	Datastore string `json:"datastore,omitempty"`
	// Disks limits a datastore move to these disks (names, e.g. disk1).
	Disks []string `json:"disks,omitempty"`
	// For slow links: MaxBandwidth caps the stream (bytes/s; 0: no cap);
	// Compress is "zstd" (multifd) or "xbzrle"; MaxDowntimeMs bounds the
	// final pause (default 300); AutoConverge slows a guest that dirties
	// memory faster than it can be sent.
	MaxBandwidth  Size   `json:"maxBandwidth,omitempty"`
	Compress      string `json:"compress,omitempty"`
	MaxDowntimeMs int    `json:"maxDowntimeMs,omitempty"`
	AutoConverge  bool   `json:"autoConverge,omitempty"`
	// Multifd sends over this many connections (0: one).
	Multifd int `json:"multifd,omitempty"`
	// Insecure sends without TLS (by default the stream between hosts is
	// encrypted with the hosts' certificates from the datacenter CA).
	Insecure bool `json:"insecure,omitempty"`
}

// MigrateResult is the result of a finished vm.migrate task.
type MigrateResult struct {
	From        Ref   `json:"from"`
	To          Ref   `json:"to"`
	Live        bool  `json:"live"`
	TotalMs     int64 `json:"totalMs"`
	DowntimeMs  int64 `json:"downtimeMs"`
	Transferred Size  `json:"transferredBytes"` // memory
	Passes      int64 `json:"passes"`
	// Datastore is where the disks Disks moved to, if any did; DiskBytes
	// the data copied for them (a live move measures it).
	Datastore Ref      `json:"datastore,omitzero"`
	Disks     []string `json:"disks,omitempty"`
	DiskBytes Size     `json:"diskBytes,omitempty"`
	// Where a live migration's time went: making the target's copy
	// ready to receive, QEMU's transfer (TotalMs covers it), and the
	// switch-over (the copy runs, the inventory says so, the source lets
	// go).
	PrepareMs int64 `json:"prepareMs,omitempty"`
	SwitchMs  int64 `json:"switchMs,omitempty"`
}
