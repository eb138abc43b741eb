package ovs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// Name is the backend's name, as in a switch's --backend.
const Name = "ovs"

var _ netconf.Backend = (*Backend)(nil)

// Datapath types (Bridge datapath_type).
const (
	// DatapathNetdev is the userspace datapath: ovs-vswitchd forwards
	// every frame itself. It needs no kernel module.
	DatapathNetdev = "netdev"
	// DatapathSystem is the kernel datapath (the openvswitch module).
	DatapathSystem = "system"
)

// Options configure a Backend.
type Options struct {
	// NetNS is the network namespace the backend manages; zero (or
	// netns.None()) means the namespace of the thread calling New.
	NetNS netns.NsHandle
	// Dir holds the backend's Open vSwitch: its database, sockets, pid
	// files and logs (e.g. <agent data>/ovs). A backend made later on the
	// same directory (a restarted agent) uses the daemons that run there.
	Dir string
	// Logger gets a line per change; nil means slog.Default().
	Logger *slog.Logger
	// Datapath forces DatapathNetdev or DatapathSystem; "" picks the
	// kernel datapath where the openvswitch module is there, the
	// userspace one where it is not.
	Datapath string
}

// Backend realizes ovs switches in one network namespace with its own
// ovsdb-server and ovs-vswitchd.
type Backend struct {
	ns       netns.NsHandle // owned: a duplicate, closed by Close
	nsInode  uint64
	h        *netlink.Handle
	c        ctl
	log      *slog.Logger
	datapath string
	whyDP    string // why this datapath, for the log and Caps

	mu      sync.Mutex // one Converge at a time
	adopted map[string]int
}

// New returns a backend for the namespace and directory in opts. It
// starts nothing: the daemons are started (or found running) by the
// first Converge.
func New(opts Options) (*Backend, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("ovs backend: no directory for the Open vSwitch database and sockets: %w", netconf.ErrInvalid)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("ovs backend: directory %s: %w", opts.Dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ovs backend: make directory %s: %w", dir, err)
	}
	var ns netns.NsHandle
	if opts.NetNS == 0 || opts.NetNS == netns.None() {
		ns, err = netns.Get()
	} else {
		ns, err = dupNS(opts.NetNS)
	}
	if err != nil {
		return nil, fmt.Errorf("ovs backend: network namespace: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		ns.Close()
		return nil, fmt.Errorf("ovs backend: identify network namespace %s: %w", ns, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("ovs backend: netlink socket in namespace %s: %w", ns, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	b := &Backend{ns: ns, nsInode: st.Ino, h: h, c: ctl{dir: dir}, log: log.With("backend", Name, "dir", dir), adopted: map[string]int{}}
	switch opts.Datapath {
	case "":
		b.datapath, b.whyDP = probeDatapath()
	case DatapathNetdev, DatapathSystem:
		b.datapath, b.whyDP = opts.Datapath, "asked for in the options"
	default:
		b.Close()
		return nil, fmt.Errorf("ovs backend: datapath %q is neither %q nor %q: %w", opts.Datapath, DatapathNetdev, DatapathSystem, netconf.ErrInvalid)
	}
	return b, nil
}

// probeDatapath picks the kernel datapath when the kernel answers for
// its generic netlink family (asking loads the module where it can be
// loaded), the userspace one otherwise.
func probeDatapath() (string, string) {
	if _, err := netlink.GenlFamilyGet("ovs_datapath"); err != nil {
		return DatapathNetdev, fmt.Sprintf("no openvswitch kernel module (%v): the userspace datapath", err)
	}
	return DatapathSystem, "the kernel has the openvswitch module"
}

// Close releases the backend's netlink socket and namespace handle; the
// daemons and devices stay.
func (b *Backend) Close() error {
	b.h.Close()
	return b.ns.Close()
}

// Name implements netconf.Backend.
func (b *Backend) Name() string { return Name }

// Datapath is the datapath type the backend gives its bridges, and why.
func (b *Backend) Datapath() (string, string) { return b.datapath, b.whyDP }

// TapOffloads says whether QEMU may open this backend's taps with
// vnet_hdr (checksum and segmentation offloads between guest and host).
// The userspace datapath forwards a frame as the tap gives it: a
// checksum a guest left to offloading arrives unfilled at the other end
// (and a TSO super-frame does not fit the underlay), so with it QEMU must
// use -netdev tap,...,vnet_hdr=off. OVS 3.1's userspace TSO does not
// help: with it, such frames into VXLAN tunnels are dropped.
func (b *Backend) TapOffloads() bool { return b.datapath != DatapathNetdev }

// Dir is the backend's Open vSwitch directory.
func (b *Backend) Dir() string { return b.c.dir }

// Caps implements netconf.Backend: VLAN tags are OVS's own, in both
// datapaths (no 8021q needed); teaming is an OVS active-backup bond of
// the switch's uplinks, the first preferred.
func (b *Backend) Caps(ctx context.Context) netconf.Caps {
	return netconf.Caps{}
}

// Converge implements netconf.Backend. Failures of one switch, port
// group or port are in the report and do not stop the others; the error
// is for what stops or spoils the whole (the daemons, reading the
// database or the host's devices, removing leftovers, ctx).
func (b *Backend) Converge(ctx context.Context, want netconf.Host) (netconf.Report, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rep := netconf.Report{Switches: map[string]netconf.SwitchReport{}, Ports: map[string]error{}}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("converge ovs switches: %w", err)
	}
	if len(want.Switches) == 0 && len(want.Ports) == 0 && b.c.ovsdbDaemon().pid() == 0 {
		// No ovs switch here, and no daemons: none was ever realized, so
		// nothing is left to remove. The daemons start with the first.
		return rep, nil
	}
	if err := b.ensureDaemons(ctx); err != nil {
		return rep, fmt.Errorf("converge ovs switches: %w", err)
	}
	cv, err := b.snapshot(ctx)
	if err != nil {
		return rep, fmt.Errorf("converge ovs switches: %w", err)
	}
	p := b.plan(cv, want, &rep)
	var errs []error
	// Leftovers go first, so that a new port group may reuse the VNI, or
	// a port the name, of one that is gone.
	if err := b.removeLeftovers(ctx, cv, p); err != nil {
		errs = append(errs, err)
	}
	for _, ub := range p.uplinks {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("converge ovs switches: %w", errors.Join(append(errs, err)...))
		}
		b.convergeUplink(ctx, cv, ub)
	}
	for _, pg := range p.portGroups {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("converge ovs switches: %w", errors.Join(append(errs, err)...))
		}
		b.convergePortGroup(ctx, cv, pg)
	}
	for _, port := range p.ports {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("converge ports: %w", errors.Join(append(errs, err)...))
		}
		rep.Ports[port.port.Tap] = b.convergePort(ctx, cv, port)
	}
	// Policies need the taps' OpenFlow port numbers.
	if err := b.rereadDB(ctx, cv); err != nil {
		return rep, fmt.Errorf("converge port-group policies: %w", errors.Join(append(errs, err)...))
	}
	for _, pg := range p.portGroups {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("converge port-group policies: %w", errors.Join(append(errs, err)...))
		}
		b.convergePolicy(ctx, cv, pg, &rep)
		pg.report(&rep)
	}
	if err := b.removeStaleQoS(ctx, cv); err != nil {
		errs = append(errs, err)
	}
	return rep, errors.Join(errs...)
}

// dupNS returns a handle of its own on the namespace ns refers to.
func dupNS(ns netns.NsHandle) (netns.NsHandle, error) {
	fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return netns.None(), fmt.Errorf("duplicate namespace handle %d: %w", int(ns), err)
	}
	return netns.NsHandle(fd), nil
}
