// Package netconftest is the conformance suite every netconf backend
// passes (bridge, ovs), and the lab it runs in: hosts that are network
// namespaces of this process, joined by veths to a lab "physical"
// network (a bridge in a namespace of its own), with IPv4 and IPv6
// addresses, so that VXLAN tunnels and VLAN tags cross a real network.
package netconftest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/testenv"
)

// Lab is a set of hosts on one underlay network.
type Lab struct {
	Hosts []*Host
	// Underlay is the namespace of the lab network's bridge.
	Underlay netns.NsHandle
}

// Host is one namespace playing a hypervisor host.
type Host struct {
	Name string
	NS   netns.NsHandle
	// Uplink is the host's interface on the lab network; it holds IPv4
	// and IPv6.
	Uplink     string
	IPv4, IPv6 netip.Addr
	// Spares are more interfaces on the lab network (eth1...), without
	// addresses, for teaming.
	Spares []string
	h      *netlink.Handle
	cables map[string]string // interface -> its veth peer on the lab bridge
	lab    *Lab
}

// LabOptions shape a lab.
type LabOptions struct {
	Hosts int
	// UnderlayMTU of the uplinks; 0 means 1550, enough for VXLAN over
	// IPv4 at MTU 1500.
	UnderlayMTU int
	// SpareUplinks is how many interfaces on the lab network each host
	// has besides its uplink (Host.Spares).
	SpareUplinks int
}

// UplinkName is every lab host's uplink.
const UplinkName = "eth0"

// NewLab builds a lab; it skips (or, under VDC_REQUIRE_E2E=1, fails)
// where the test cannot make namespaces, veths, bridges or taps. The
// namespaces, and everything in them, go at the end of the test.
func NewLab(t testing.TB, opts LabOptions) *Lab {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces as hosts")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "no /dev/net/tun: %v", err)
	}
	if opts.Hosts == 0 {
		opts.Hosts = 2
	}
	if opts.UnderlayMTU == 0 {
		opts.UnderlayMTU = 1550
	}
	lab := &Lab{}
	var err error
	if lab.Underlay, err = newNS(); err != nil {
		testenv.Skip(t, "cannot make a network namespace: %v", err)
	}
	t.Cleanup(func() { lab.Underlay.Close() })
	uh, err := netlink.NewHandleAt(lab.Underlay)
	if err != nil {
		t.Fatalf("netlink in the underlay namespace: %v", err)
	}
	defer uh.Close()
	sw := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "lab0", TxQLen: -1}}
	if err := uh.LinkAdd(sw); err != nil {
		testenv.Skip(t, "cannot make a bridge: %v", err)
	}
	if err := uh.LinkSetUp(sw); err != nil {
		t.Fatalf("set the lab bridge up: %v", err)
	}
	for i := range opts.Hosts {
		h := lab.addHost(t, uh, sw, i, opts.UnderlayMTU)
		for j := 1; j <= opts.SpareUplinks; j++ {
			lab.addSpare(t, uh, sw, h, fmt.Sprintf("lab0p%ds%d", i, j), fmt.Sprintf("eth%d", j), opts.UnderlayMTU)
		}
		lab.Hosts = append(lab.Hosts, h)
	}
	return lab
}

func (lab *Lab) addHost(t testing.TB, uh *netlink.Handle, sw *netlink.Bridge, i, mtu int) *Host {
	t.Helper()
	host := &Host{
		lab:    lab,
		cables: map[string]string{UplinkName: fmt.Sprintf("lab0p%d", i)},
		Name:   fmt.Sprintf("host%d", i),
		Uplink: UplinkName,
		IPv4:   netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}),
		IPv6:   netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", i+1)),
	}
	var err error
	if host.NS, err = newNS(); err != nil {
		t.Fatalf("make the namespace of %s: %v", host.Name, err)
	}
	t.Cleanup(func() { host.NS.Close() })
	if host.h, err = netlink.NewHandleAt(host.NS); err != nil {
		t.Fatalf("netlink in %s: %v", host.Name, err)
	}
	t.Cleanup(host.h.Close)
	port := fmt.Sprintf("lab0p%d", i)
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: mtu, TxQLen: -1, MasterIndex: sw.Attrs().Index},
		PeerName:      host.Uplink,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(host.NS),
	}
	if err := uh.LinkAdd(veth); err != nil {
		testenv.Skip(t, "cannot make a veth into %s: %v", host.Name, err)
	}
	if err := uh.LinkSetUp(veth); err != nil {
		t.Fatalf("set %s up: %v", port, err)
	}
	up, err := host.h.LinkByName(host.Uplink)
	if err != nil {
		t.Fatalf("%s's uplink: %v", host.Name, err)
	}
	for _, a := range []netip.Prefix{netip.PrefixFrom(host.IPv4, 24), netip.PrefixFrom(host.IPv6, 64)} {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}}
		if a.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection wait
		}
		if err := host.h.AddrAdd(up, addr); err != nil {
			t.Fatalf("address %s on %s of %s: %v", a, host.Uplink, host.Name, err)
		}
	}
	for _, name := range []string{"lo", host.Uplink} {
		l, err := host.h.LinkByName(name)
		if err == nil {
			err = host.h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("set %s of %s up: %v", name, host.Name, err)
		}
	}
	return host
}

func (lab *Lab) addSpare(t testing.TB, uh *netlink.Handle, sw *netlink.Bridge, host *Host, port, name string, mtu int) {
	t.Helper()
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: port, MTU: mtu, TxQLen: -1, MasterIndex: sw.Attrs().Index},
		PeerName:      name,
		PeerMTU:       uint32(mtu),
		PeerNamespace: netlink.NsFd(host.NS),
	}
	if err := uh.LinkAdd(veth); err != nil {
		t.Fatalf("make spare uplink %s of %s: %v", name, host.Name, err)
	}
	if err := uh.LinkSetUp(veth); err != nil {
		t.Fatalf("set %s up: %v", port, err)
	}
	l, err := host.h.LinkByName(name)
	if err == nil {
		err = host.h.LinkSetUp(l)
	}
	if err != nil {
		t.Fatalf("set %s of %s up: %v", name, host.Name, err)
	}
	host.Spares = append(host.Spares, name)
	host.cables[name] = port
}

// SetCable plugs (up) or pulls (down) the lab end of one of the host's
// interfaces on the lab network: pulled, the interface loses its
// carrier.
func (h *Host) SetCable(t testing.TB, dev string, up bool) {
	t.Helper()
	uh, err := netlink.NewHandleAt(h.lab.Underlay)
	if err != nil {
		t.Fatalf("netlink in the underlay namespace: %v", err)
	}
	defer uh.Close()
	l, err := uh.LinkByName(h.cables[dev])
	if err == nil {
		if up {
			err = uh.LinkSetUp(l)
		} else {
			err = uh.LinkSetDown(l)
		}
	}
	if err != nil {
		t.Fatalf("set the cable of %s on %s up=%v: %v", dev, h.Name, up, err)
	}
}

// Handle is a netlink handle in the host's namespace.
func (h *Host) Handle() *netlink.Handle { return h.h }

// newNS makes a network namespace without entering it.
func newNS() (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return netns.None(), err
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		return netns.None(), err
	}
	if err := netns.Set(orig); err != nil {
		// Cannot happen short of a broken kernel; never hand the thread
		// back to the runtime in the wrong namespace.
		panic(fmt.Sprintf("return to the test's network namespace: %v", err))
	}
	return ns, nil
}

// inNS runs fn on a thread in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		return fmt.Errorf("enter namespace: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		panic(fmt.Sprintf("return to the test's network namespace: %v", err))
	}
	return fnErr
}

// Link is a device as the suite compares it across Converges.
type Link struct {
	Name   string
	Kind   string
	Index  int
	Master int
	MTU    int
	Up     bool
	Alias  string
	MAC    string
}

// Links lists the host's devices by name.
func (h *Host) Links(t testing.TB) map[string]Link {
	t.Helper()
	all, err := h.h.LinkList()
	if err != nil {
		t.Fatalf("list the devices of %s: %v", h.Name, err)
	}
	out := map[string]Link{}
	for _, l := range all {
		a := l.Attrs()
		out[a.Name] = Link{
			Name: a.Name, Kind: l.Type(), Index: a.Index, Master: a.MasterIndex, MTU: a.MTU,
			Up: a.Flags&net.FlagUp != 0, Alias: a.Alias, MAC: a.HardwareAddr.String(),
		}
	}
	return out
}

// Link is one device of the host; it fails the test when missing.
func (h *Host) Link(t testing.TB, name string) Link {
	t.Helper()
	l, ok := h.Links(t)[name]
	if !ok {
		t.Fatalf("%s has no device %s", h.Name, name)
	}
	return l
}

// MakeForeignTap makes a persistent tap that vdc did not make (no
// alias), as an operator's or another tool's.
func (h *Host) MakeForeignTap(t testing.TB, name string) Link {
	t.Helper()
	err := inNS(h.NS, func() error {
		f, err := openTun(name, unix.IFF_TAP|unix.IFF_NO_PI)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 1)
	})
	if err != nil {
		t.Fatalf("make foreign tap %s on %s: %v", name, h.Name, err)
	}
	return h.Link(t, name)
}

// MakeForeignBridge makes a bridge vdc did not make, with alias (which
// may be "").
func (h *Host) MakeForeignBridge(t testing.TB, name, alias string) Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	br := &netlink.Bridge{LinkAttrs: la}
	if err := h.h.LinkAdd(br); err != nil {
		t.Fatalf("make foreign bridge %s on %s: %v", name, h.Name, err)
	}
	if alias != "" {
		// The kernel takes no alias in the request that creates a device.
		if err := h.h.LinkSetAlias(br, alias); err != nil {
			t.Fatalf("set alias of foreign bridge %s on %s: %v", name, h.Name, err)
		}
	}
	return h.Link(t, name)
}

var errNoFrame = errors.New("no frame")
