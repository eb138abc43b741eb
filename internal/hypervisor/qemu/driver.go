package qemu

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/cmdline"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/kvmprobe"
)

var _ hypervisor.Driver = (*Driver)(nil)
var _ hypervisor.GuestAgent = (*Driver)(nil)
var _ hypervisor.Console = (*Driver)(nil)
var _ hypervisor.Display = (*Driver)(nil)

// Options configure the driver.
type Options struct {
	// Binary is qemu-system-x86_64 (found on PATH by default).
	Binary string
	// RunDir holds the sockets of VMs whose own directory has too long a
	// path for a unix socket (default /run/vdc, or a directory in the temp
	// dir when not root).
	RunDir string
	// Accel forces "kvm" or "tcg"; by default KVM is used when a probe
	// shows it really runs guests.
	Accel string
	// GuestPoll is how often the guest agent is pinged (default 5s).
	GuestPoll time.Duration
	// GuestAgentGrace is how long a guest's agent may stay silent after
	// the guest starts (its boot) before it is shown not-installed rather
	// than not-running (default 2 minutes).
	GuestAgentGrace time.Duration
	// TLSDir holds this host's certificate in QEMU's layout (ca-cert.pem,
	// server-cert.pem, server-key.pem, client-cert.pem, client-key.pem),
	// for encrypted migrations.
	TLSDir string
	// Host is this host's name, written in the leases its VMs hold.
	Host string
	// MergeBandwidth caps live snapshot merges (bytes/s; 0: no cap).
	MergeBandwidth int64
	Log            *slog.Logger
}

// Driver runs VMs as QEMU processes.
type Driver struct {
	opt     Options
	accel   string
	noKVM   string // why VMs do not run under KVM
	version string
	log     *slog.Logger

	mu     sync.Mutex
	vms    map[string]*vm
	subs   map[chan string]bool
	closed bool
}

// Available reports whether QEMU is installed, and if not, why.
func Available(binary string) error {
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	if _, err := exec.LookPath(binary); err != nil {
		return fmt.Errorf("%s is not installed (apt-get install qemu-system-x86 qemu-utils)", binary)
	}
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return errors.New("qemu-img is not installed (apt-get install qemu-utils)")
	}
	return nil
}

// New checks that QEMU can run and probes the acceleration.
func New(ctx context.Context, o Options) (*Driver, error) {
	if o.Binary == "" {
		o.Binary = "qemu-system-x86_64"
	}
	if err := Available(o.Binary); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.GuestPoll <= 0 {
		o.GuestPoll = 5 * time.Second
	}
	if o.GuestAgentGrace <= 0 {
		o.GuestAgentGrace = 2 * time.Minute
	}
	if o.RunDir == "" {
		o.RunDir = defaultRunDir()
	}
	if err := os.MkdirAll(o.RunDir, 0o700); err != nil {
		return nil, fmt.Errorf("create QEMU runtime dir: %w", err)
	}
	d := &Driver{opt: o, log: o.Log, vms: map[string]*vm{}, subs: map[chan string]bool{}}
	out, err := exec.CommandContext(ctx, o.Binary, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("run %s --version: %w", o.Binary, err)
	}
	d.version = strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
	d.version = strings.TrimPrefix(d.version, "QEMU emulator version ")
	switch o.Accel {
	case "kvm":
		d.accel = o.Accel
	case "tcg":
		d.accel, d.noKVM = o.Accel, "TCG was asked for (--accel tcg)"
	case "":
		d.accel = "tcg"
		if err := ProbeKVM(ctx, o.Binary); err == nil {
			d.accel = "kvm"
		} else {
			d.noKVM = err.Error()
			d.log.Info("KVM does not work here; VMs run under TCG (software emulation)", "why", err)
		}
	default:
		return nil, fmt.Errorf("accel %q: want kvm or tcg", o.Accel)
	}
	return d, nil
}

func defaultRunDir() string {
	if os.Geteuid() == 0 {
		return "/run/vdc"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("vdc-run-%d", os.Geteuid()))
}

// Accel is the acceleration VMs use: kvm or tcg.
func (d *Driver) Accel() string { return d.accel }

// Info reports the machine's CPUs and memory.
func (d *Driver) Info(ctx context.Context) (hypervisor.HostInfo, error) {
	cpus, mem := MachineCapacity()
	return hypervisor.HostInfo{Driver: "qemu", Accel: d.accel, AccelReason: d.noKVM, Version: "QEMU " + d.version, CPUs: cpus, MemoryBytes: mem}, nil
}

// MachineCapacity is this machine's CPUs and memory.
func MachineCapacity() (cpus int, memoryBytes int64) {
	return runtime.NumCPU(), memTotal()
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// runDirFor is a VM's socket directory: its own directory when that is
// short enough for unix socket paths (107 bytes), else a short one under
// RunDir, the same for every agent process that manages the VM.
func (d *Driver) runDirFor(cfg hypervisor.VMConfig) string {
	if len(cfg.Dir)+len("/console.sock") < 100 {
		return cfg.Dir
	}
	sum := sha256.Sum256([]byte(cfg.Dir + "\x00" + cfg.ID))
	return filepath.Join(d.opt.RunDir, hex.EncodeToString(sum[:8]))
}

func (d *Driver) get(id string) (*vm, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("qemu driver closed")
	}
	v, ok := d.vms[id]
	if !ok {
		return nil, fmt.Errorf("vm %s: %w", id, hypervisor.ErrNotFound)
	}
	return v, nil
}

// notify tells subscribers that a VM changed state by itself.
func (d *Driver) notify(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ch := range d.subs {
		select {
		case ch <- id:
		default:
		}
	}
}

// Subscribe delivers the IDs of VMs whose state changed by itself.
func (d *Driver) Subscribe(ctx context.Context) <-chan string {
	ch := make(chan string, 256)
	d.mu.Lock()
	d.subs[ch] = true
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		d.mu.Lock()
		delete(d.subs, ch)
		d.mu.Unlock()
		close(ch)
	}()
	return ch
}

// Close lets go of the VMs without touching them: they keep running.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	vms := d.vms
	d.vms = map[string]*vm{}
	d.mu.Unlock()
	for _, v := range vms {
		v.release()
	}
	return nil
}

// SeedTool makes NoCloud seed ISOs (Debian's genisoimage, as cloud-localds
// uses).
var SeedTool = "genisoimage"

// CPUModel is the vCPU model every VM gets (see cmdline.CPUModel).
const CPUModel = cmdline.CPUModel

// ProbeKVM checks that KVM really runs guests, and faster than TCG:
// /dev/kvm existing (or even opening) is not enough. It returns nil when
// KVM should be used, else why not.
func ProbeKVM(ctx context.Context, binary string) error { return kvmprobe.KVM(ctx, binary) }
