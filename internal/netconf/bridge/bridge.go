// Package bridge is the netconf backend made of plain Linux networking,
// all through netlink: a Linux bridge per port group per host; a VXLAN
// device per VXLAN port group, enslaved to its bridge, whose flood list
// is one all-zeros FDB entry per peer host (head-end replication by
// unicast, no multicast underlay); an 802.1Q sub-interface of the uplink
// per VLAN port group where the kernel has 8021q; and a persistent tap
// per port, attached to its port group's bridge.
//
// Every device it makes carries the alias "vdc/bridge: ..." (see
// netconf.Alias), which is how a restarted agent finds them and how
// Converge knows what it may remove: it never touches a device without.
package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// Name is the backend's name, as in a switch's --backend.
const Name = "bridge"

var _ netconf.Backend = (*Backend)(nil)

// Options configure a Backend.
type Options struct {
	// NetNS is the network namespace the backend manages; zero (or
	// netns.None()) means the namespace of the thread calling New.
	NetNS netns.NsHandle
	// Logger gets a line per change; nil means slog.Default().
	Logger *slog.Logger
	// Policy, when set, enforces port-group policies on the ports at
	// the end of every Converge.
	Policy netconf.PolicyEnforcer
}

// Backend realizes bridge switches in one network namespace.
type Backend struct {
	ns     netns.NsHandle // owned: a duplicate, closed by Close
	h      *netlink.Handle
	log    *slog.Logger
	policy netconf.PolicyEnforcer

	mu       sync.Mutex // one Converge at a time
	capsOnce sync.Once
	caps     netconf.Caps
}

// New returns a backend for the namespace in opts.
func New(opts Options) (*Backend, error) {
	var ns netns.NsHandle
	var err error
	if opts.NetNS == 0 || opts.NetNS == netns.None() {
		ns, err = netns.Get()
	} else {
		ns, err = dupNS(opts.NetNS)
	}
	if err != nil {
		return nil, fmt.Errorf("bridge backend: network namespace: %w", err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("bridge backend: netlink socket in namespace %s: %w", ns, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Backend{ns: ns, h: h, log: log.With("backend", Name), policy: opts.Policy}, nil
}

// Close releases the backend's netlink socket and namespace handle; the
// devices stay.
func (b *Backend) Close() error {
	b.h.Close()
	return b.ns.Close()
}

// Name implements netconf.Backend.
func (b *Backend) Name() string { return Name }

// Caps implements netconf.Backend. The probes run once.
func (b *Backend) Caps(ctx context.Context) netconf.Caps {
	b.capsOnce.Do(func() {
		b.caps = netconf.Caps{
			VLAN:    b.probeVLAN(),
			Teaming: fmt.Errorf("the bridge backend uses one uplink (the first of a switch's uplinks); teaming several is not implemented: %w", netconf.ErrNotSupported),
		}
	})
	return b.caps
}

// Converge implements netconf.Backend. Failures of one switch, port
// group or port are in the report and do not stop the others; the error
// is for what stops or spoils the whole (listing the host's devices,
// removing leftovers, policy enforcement, ctx).
func (b *Backend) Converge(ctx context.Context, want netconf.Host) (netconf.Report, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rep := netconf.Report{Switches: map[string]netconf.SwitchReport{}, Ports: map[string]error{}}
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("converge bridge switches: %w", err)
	}
	links, err := b.listLinks()
	if err != nil {
		return rep, err
	}
	p := b.plan(ctx, want, links, &rep)

	// Leftovers go first, so that a new port group may reuse the VNI of
	// one that is gone.
	var errs []error
	if err := b.removeLeftovers(links, p); err != nil {
		errs = append(errs, err)
	}
	for _, pg := range p.portGroups {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("converge bridge switches: %w", errors.Join(append(errs, err)...))
		}
		b.convergePortGroup(links, pg)
		pg.report(&rep)
	}
	var attached []netconf.PortPolicy
	for _, port := range p.ports {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("converge ports: %w", errors.Join(append(errs, err)...))
		}
		err := b.convergePort(links, port)
		rep.Ports[port.port.Tap] = err
		if err == nil && port.pg != nil {
			attached = append(attached, netconf.PortPolicy{
				Tap: port.port.Tap, PortGroup: port.pg.pg.ID, MAC: port.port.MAC, Policy: port.pg.pg.Policy,
			})
		}
	}

	// Policies: the one place they are enforced, for every attached port
	// (its tap, MAC and port group's policy), after the taps exist.
	if b.policy != nil {
		if err := b.policy.Converge(ctx, attached); err != nil {
			errs = append(errs, fmt.Errorf("enforce port-group policies: %w", err))
		}
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
