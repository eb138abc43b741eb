package hypervisor

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/vdc-project/vdc/api"
)

// Errors a driver returns, wrapped with context.
var (
	ErrNotFound     = errors.New("vm not found on this host")
	ErrWrongState   = errors.New("vm is in the wrong power state")
	ErrNotSupported = errors.New("not supported by this driver")
	// ErrGuestAgent: the VM runs but its guest agent did not answer (not
	// started yet, not installed, hung). Worth a retry; not a power state.
	ErrGuestAgent = errors.New("the guest agent does not answer")
)

// Power states as a driver sees them. "unknown" is never a driver state.
const (
	StateOff       = "off"
	StateOn        = "on"
	StateSuspended = "suspended"
)

// VMConfig is everything a driver needs to run one VM. The agent owns it
// and hands it to the driver on Define and again on Attach after a restart.
type VMConfig struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	CPUs        int               `json:"cpus"`
	MemoryBytes int64             `json:"memoryBytes"`
	Disks       []DiskConfig      `json:"disks"`
	NICs        []NICConfig       `json:"nics"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Boot, when set, boots a kernel and initrd directly (no boot disk).
	Boot *BootConfig `json:"boot,omitempty"`
	// CDROM is the path of an ISO image to attach (and boot from when the
	// disks are empty).
	CDROM string `json:"cdrom,omitempty"`
	// VNC turns on a VNC display, served on a unix socket of the host.
	VNC bool `json:"vnc,omitempty"`
	// MaxCPUs and MaxMemoryBytes leave room to hot-add vCPUs and memory
	// while the VM runs (0: none).
	MaxCPUs        int   `json:"maxCpus,omitempty"`
	MaxMemoryBytes int64 `json:"maxMemoryBytes,omitempty"`
	// Hardware, for a copy that receives a running VM's state (Incoming),
	// is the hardware of the VM that sends it: the copy is built the same
	// (hot-added vCPUs and memory, display) whatever the rest says. Nil:
	// the hardware this config boots with.
	Hardware *api.VMHardware `json:"hardware,omitempty"`
	// Seed, when set, is attached as a NoCloud cloud-init CD-ROM.
	Seed *Seed `json:"seed,omitempty"`
	// Dir is a directory on the host that belongs to this VM alone (pid
	// file, logs, driver state). Set by the agent.
	Dir string `json:"dir"`
	// Lease is the VM's lease file on its datastore (package lease): a
	// running copy holds it, so that no second copy can start on any
	// host. Empty: the VM has none (HA does not protect it).
	Lease string `json:"lease,omitempty"`
}

// BootConfig is a direct kernel boot.
type BootConfig struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
}

type DiskConfig struct {
	Name string `json:"name"`
	// Path is the absolute path of the disk file on this host.
	Path      string `json:"path"`
	SizeBytes int64  `json:"sizeBytes"`
	Bus       string `json:"bus"`
	// Source, when set, is a disk file the disk is made from on Define:
	// copied, or with Linked, used as the read-only base of a thin overlay.
	Source string `json:"source,omitempty"`
	Linked bool   `json:"linked,omitempty"`
	// Own says Source is a disk file vdc made (a snapshot, a template's or
	// a VM's disk, on a datastore): a backing chain is expected. Other
	// sources are foreign images, checked for files they would open.
	Own bool `json:"own,omitempty"`
	// Thick allocates the whole disk when it is made.
	Thick bool `json:"thick,omitempty"`
	// Slot is the hot-plug root port of a virtio disk plugged in while
	// the VM ran ("" for the root bus).
	Slot string `json:"slot,omitempty"`
}

type NICConfig struct {
	Name      string `json:"name"`
	MAC       string `json:"mac"`
	Model     string `json:"model"`
	PortGroup string `json:"portGroup"` // port group ID
	VLAN      int    `json:"vlan"`
	// Switch is the distributed switch of the port group; none means NAT
	// (QEMU user-mode networking).
	Switch string `json:"switch,omitempty"`
	// Tap is the host's tap device the NIC is plugged into, made and
	// attached to the port group by the agent before QEMU starts; set by
	// the agent for a NIC on a switch.
	Tap string `json:"tap,omitempty"`
	// IPv4 is the NIC's address on a port group with DHCP: the host's
	// DHCP service gives it to this MAC.
	IPv4 string `json:"ipv4,omitempty"`
	// NoOffloads opens the tap without the virtio-net header (vnet_hdr=off):
	// its switch's datapath (Open vSwitch's userspace one) does not finish
	// the checksums and segmentation a guest leaves to the host.
	NoOffloads bool `json:"noOffloads,omitempty"`
	// LinkDown unplugs the virtual cable (the guest sees no carrier).
	LinkDown bool `json:"linkDown,omitempty"`
	// Slot is the hot-plug root port of a NIC plugged in while the VM
	// ran ("" for one it started with, which gets a root port of its own).
	Slot string `json:"slot,omitempty"`
}

// VMState is a driver's view of one VM.
type VMState struct {
	Power string `json:"power"`
	// Reason says why the VM is in this state when it was not asked for
	// (the guest shut itself down, the process crashed...).
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
	// VNC is where the running VM's display is served ("unix:PATH"), if
	// it has one.
	VNC string `json:"vnc,omitempty"`
}

// HostInfo is what a driver reports about the machine it runs on.
type HostInfo struct {
	Driver string // sim, qemu
	Accel  string // sim, kvm, tcg
	// AccelReason says why a driver that could use KVM does not (the
	// probe's failure, or that TCG was asked for).
	AccelReason string
	// Version is the hypervisor's ("QEMU 7.2.22"): VMs move live only
	// between hosts that run the same.
	Version     string
	CPUs        int
	MemoryBytes int64
}

// Driver runs VMs on one host. Every method is safe for concurrent use;
// calls for one VM are serialized by the agent.
type Driver interface {
	// Info describes the host's capacity and acceleration.
	Info(ctx context.Context) (HostInfo, error)
	// Define creates the VM's disks and files, or updates the definition of
	// a VM that is off. It is idempotent.
	Define(ctx context.Context, cfg VMConfig) error
	// Attach takes over a VM defined earlier, possibly by a previous agent
	// process, and returns its state. A running VM keeps running.
	Attach(ctx context.Context, cfg VMConfig) (VMState, error)
	// Undefine removes the VM's files; the VM must be off.
	Undefine(ctx context.Context, id string) error
	// State returns the VM's current state.
	State(ctx context.Context, id string) (VMState, error)

	Start(ctx context.Context, id string) error
	// Shutdown asks the guest to shut down (ACPI) and returns without
	// waiting; the VM turns off when the guest is done.
	Shutdown(ctx context.Context, id string) error
	// PowerOff stops the VM at once.
	PowerOff(ctx context.Context, id string) error
	Reset(ctx context.Context, id string) error
	// Suspend pauses the VM's vCPUs; Resume continues them.
	Suspend(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error

	// Subscribe returns a channel that receives the ID of a VM whenever its
	// state changes by itself (guest shutdown, crash), until ctx ends.
	Subscribe(ctx context.Context) <-chan string
}

// Guest agent states.
const (
	GuestRunning       = "running"
	GuestNotRunning    = "not-running"
	GuestNotResponding = "not-responding"
	GuestNotInstalled  = "not-installed"
)

// GuestInfo is what the guest's agent tells of the guest.
type GuestInfo struct {
	// State: running (it answers), not-running (it has not answered
	// yet, in the first minutes of the guest's boot), not-responding (it
	// answered before, not any more), not-installed (it never answered
	// in those first minutes).
	State       string    `json:"state"`
	OS          string    `json:"os,omitempty"`
	Kernel      string    `json:"kernel,omitempty"`
	Hostname    string    `json:"hostname,omitempty"`
	IPAddresses []string  `json:"ipAddresses,omitempty"`
	LastSeen    time.Time `json:"lastSeen,omitzero"`
}

// ExecRequest runs a program in the guest.
type ExecRequest struct {
	Path  string   `json:"path"`
	Args  []string `json:"args,omitempty"`
	Env   []string `json:"env,omitempty"`
	Input []byte   `json:"input,omitempty"`
}

// ExecResult is how a program run in the guest ended.
type ExecResult struct {
	ExitCode  int    `json:"exitCode"`
	Signal    int    `json:"signal,omitempty"`
	Stdout    []byte `json:"stdout"`
	Stderr    []byte `json:"stderr"`
	Truncated bool   `json:"truncated,omitempty"`
}

// GuestAgent is implemented by drivers that talk to an agent inside the
// guest (qemu-guest-agent).
type GuestAgent interface {
	// Guest returns the latest guest information; a VM that is off has none.
	Guest(ctx context.Context, id string) (GuestInfo, error)
	GuestExec(ctx context.Context, id string, req ExecRequest) (ExecResult, error)
}

// Console is implemented by drivers whose VMs have a serial console.
type Console interface {
	// ConsoleLog returns up to the last max bytes the console printed.
	ConsoleLog(ctx context.Context, id string, max int) ([]byte, error)
	// ConsoleAttach connects to the running VM's console.
	ConsoleAttach(ctx context.Context, id string) (io.ReadWriteCloser, error)
}

// Display is implemented by drivers whose VMs can have a graphical
// console (VNC).
type Display interface {
	// DisplayAttach connects to the running VM's VNC display: the stream
	// speaks RFB from its first byte.
	DisplayAttach(ctx context.Context, id string) (io.ReadWriteCloser, error)
}

// HotAddResult says what a hot-add did.
type HotAddResult struct {
	Hardware api.VMHardware `json:"hardware"`
	// Guest says what the guest made of it (the new vCPUs and memory
	// online, or why they are not).
	Guest string `json:"guest"`
}

// Hotplugger is implemented by drivers that add vCPUs and memory to
// running VMs (CPU and memory hot-add).
type Hotplugger interface {
	// HotAdd grows a running VM to cpus vCPUs and memoryBytes of memory
	// (each 0: as it is), within the room its config left (MaxCPUs,
	// MaxMemoryBytes), and asks the guest to use them. It never takes
	// any away: asking for less is ErrInvalid. It is idempotent.
	HotAdd(ctx context.Context, id string, cpus int, memoryBytes int64) (HotAddResult, error)
	// Hardware is the hardware the running VM has now.
	Hardware(ctx context.Context, id string) (api.VMHardware, error)
}

// Migration states, as MigrationStatus reports them.
const (
	MigrationNone      = "none"
	MigrationSetup     = "setup"
	MigrationMirroring = "mirroring" // copying disks before memory
	MigrationActive    = "active"    // copying memory
	MigrationCompleted = "completed"
	MigrationFailed    = "failed"
	MigrationCancelled = "cancelled"
)

// IncomingOptions say how a copy of a VM will receive it.
type IncomingOptions struct {
	// Address is the IP this host receives on (the agent's).
	Address string
	// TLS encrypts and authenticates the stream with the host's
	// certificate from the datacenter CA.
	TLS bool
	// Disks receives the disks too, over NBD, into new files (no shared
	// storage). Without it the disks must already be reachable.
	Disks bool
	// Multifd and Compress must match the source's MigrateTarget.
	Multifd  int
	Compress string // "", "zstd" or "xbzrle"
}

// Incoming says where to send a VM.
type Incoming struct {
	URI string `json:"uri"` // tcp:IP:PORT
	// NBD is the host:port of the disk receiver (Disks).
	NBD string `json:"nbd,omitempty"`
}

// MigrateTarget is where and how to send a running VM.
type MigrateTarget struct {
	URI string `json:"uri"`
	NBD string `json:"nbd,omitempty"`
	// TLSHostname is the name in the target host's certificate; empty
	// means no TLS.
	TLSHostname string `json:"tlsHostname,omitempty"`
	// MaxBandwidth in bytes/s (0: QEMU's default, unlimited here).
	MaxBandwidth int64 `json:"maxBandwidth,omitempty"`
	// DowntimeLimit is the longest pause allowed for the switch-over.
	DowntimeLimit time.Duration `json:"downtimeLimit,omitempty"`
	AutoConverge  bool          `json:"autoConverge,omitempty"`
	Multifd       int           `json:"multifd,omitempty"`
	Compress      string        `json:"compress,omitempty"`
}

// MigrationStatus is how far a migration out is.
type MigrationStatus struct {
	State            string        `json:"state"`
	TotalBytes       int64         `json:"totalBytes"` // memory
	TransferredBytes int64         `json:"transferredBytes"`
	RemainingBytes   int64         `json:"remainingBytes"`
	DirtyRate        int64         `json:"dirtyRate"` // bytes/s
	Pass             int64         `json:"pass"`
	DiskTotal        int64         `json:"diskTotal"`
	DiskDone         int64         `json:"diskDone"`
	TotalTime        time.Duration `json:"totalTime"`
	Downtime         time.Duration `json:"downtime"`
	Error            string        `json:"error,omitempty"`
}

// DiskMove moves one disk of a running VM to a new file.
type DiskMove struct {
	Name string `json:"name"`
	Path string `json:"path"` // the new file
}

// Migrator is implemented by drivers that move running VMs.
type Migrator interface {
	// Incoming starts an empty copy of a VM on this host, waiting for its
	// state (and with Disks, its disks), and says where to send them. The
	// copy is not a running VM until FinishIncoming.
	Incoming(ctx context.Context, cfg VMConfig, opt IncomingOptions) (Incoming, error)
	// FinishIncoming runs the copy once the source has sent everything.
	FinishIncoming(ctx context.Context, id string) error
	// AbortIncoming stops the copy and removes what Incoming made.
	AbortIncoming(ctx context.Context, id string) error
	// MigrateOut starts sending a running VM; MigrationStatus follows it.
	MigrateOut(ctx context.Context, id string, to MigrateTarget) error
	MigrationStatus(ctx context.Context, id string) (MigrationStatus, error)
	// CancelMigration stops a migration out; the VM runs on here. After a
	// completed migration whose target never ran the VM (its host was lost
	// at the switch-over), it runs the VM here again.
	CancelMigration(ctx context.Context, id string) error
	// Release forgets a VM that now runs elsewhere: its process ends, and
	// with removeDisks its disk files go (they were copied to the target).
	Release(ctx context.Context, id string, removeDisks bool) error
	// MoveDisks copies a running VM's disks to new files while it runs and
	// switches the VM to them (storage migration); MigrationStatus
	// follows it. The old files are removed once the VM uses the new ones.
	MoveDisks(ctx context.Context, id string, moves []DiskMove) error
}

// Leaser is implemented by drivers whose running VMs hold their lease
// (VMConfig.Lease): taken on start and on the switch-over of a migration,
// let go when the VM stops or its state has gone to another host.
type Leaser interface {
	// HoldLease makes a running VM hold the lease at path instead of the
	// one it holds (none: path empty). It fails if another copy holds it,
	// and for a VM whose state a migration is sending or has sent away.
	HoldLease(ctx context.Context, id, path string) error
	// Lease is the path of the lease the VM holds, if any.
	Lease(id string) string
}

// Discarder is implemented by drivers that can clean up after a VM of
// which only runtime files are left: a migration into this host that the
// agent's death interrupted (its copy is never registered).
type Discarder interface {
	Discard(ctx context.Context, id, dir string) error
}
