package api

import "time"

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
	Cluster     Ref      `json:"cluster"`
	Host        Ref      `json:"host"`
	CPUs        int      `json:"cpus"`
	MemoryBytes Size     `json:"memoryBytes"`
	Disks       []VMDisk `json:"disks"`
	NICs        []VMNIC  `json:"nics"`
	Description string   `json:"description,omitempty"`
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
}

type VMNIC struct {
	Name      string `json:"name"` // nic0, nic1...
	PortGroup Ref    `json:"portGroup"`
	MAC       string `json:"mac"`
	Model     string `json:"model"`
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
)

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
}

type DiskRequest struct {
	Size      Size   `json:"size"`
	Datastore string `json:"datastore,omitempty"` // default: the only datastore the cluster sees
	Bus       string `json:"bus,omitempty"`       // default virtio
}

type NICRequest struct {
	PortGroup string `json:"portGroup"`
	MAC       string `json:"mac,omitempty"`   // default: generated, unique in the datacenter
	Model     string `json:"model,omitempty"` // default virtio
}

// VMUpdateRequest is the body of PATCH /api/v1/vms/{vm}; absent fields stay.
// CPUs and memory change only while the VM is off.
type VMUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	CPUs        *int              `json:"cpus,omitempty"`
	Memory      *Size             `json:"memory,omitempty"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
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
