// Package lab makes the small "physical" network that vdc up runs its
// hosts on when it may (as root): each host agent gets a network
// namespace of its own, joined by a veth pair to a lab bridge in the
// machine's namespace, where the server listens. What crosses between
// hosts (VXLAN, migrations) then crosses a real network, as between
// machines. The lab is made with netlink, kept across runs (VMs keep
// running in their hosts' namespaces when vdc up stops) and found again
// by its data directory.
package lab

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// MTU of the lab network: jumbo frames, so that VXLAN carries guests'
// 1500-byte frames whole.
const MTU = 9000

// Lab is one vdc up's network.
type Lab struct {
	ID     string       // 4 hex digits, from the data directory
	Bridge string       // in the machine's namespace
	Subnet netip.Prefix // 10.X.Y.0/24; .1 is the bridge, host i is .10+i
}

// For is the lab of the vdc up whose data directory is dir.
func For(dir string) *Lab {
	sum := sha256.Sum256([]byte(filepath.Clean(dir)))
	l := &Lab{ID: fmt.Sprintf("%02x%02x", sum[0], sum[1]), Bridge: fmt.Sprintf("vdcl%02x%02x", sum[0], sum[1])}
	l.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 128 + sum[2]%64, sum[3], 0}), 24)
	return l
}

// Available says why a lab cannot be made here (nil if it can): it needs
// root and network namespaces.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("giving each host its own network namespace needs root")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("this kernel has no network namespaces: %w", err)
	}
	return nil
}

// ServerIP is the lab bridge's address, where the server listens.
func (l *Lab) ServerIP() netip.Addr { return l.addr(1) }

// HostIP is host i's address (i from 1).
func (l *Lab) HostIP(i int) netip.Addr { return l.addr(10 + i) }

func (l *Lab) addr(n int) netip.Addr {
	b := l.Subnet.Addr().As4()
	b[3] = byte(n)
	return netip.AddrFrom4(b)
}

// Namespace is the name of host i's network namespace (ip netns).
func (l *Lab) Namespace(i int) string { return fmt.Sprintf("vdc-%s-host-%d", l.ID, i) }

func (l *Lab) veth(i int) string { return fmt.Sprintf("%sh%d", l.Bridge, i) }

// Ensure makes the lab with hosts 1..n, or what of it is missing.
func (l *Lab) Ensure(n int) error {
	if n > 200 {
		return fmt.Errorf("a lab holds at most 200 hosts, %d asked for", n)
	}
	br, err := l.ensureBridge()
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := l.ensureHost(br, i); err != nil {
			return fmt.Errorf("lab host %d: %w", i, err)
		}
	}
	return nil
}

func (l *Lab) ensureBridge() (netlink.Link, error) {
	br, err := netlink.LinkByName(l.Bridge)
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU = l.Bridge, MTU
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return nil, fmt.Errorf("make lab bridge %s: %w", l.Bridge, err)
		}
		if br, err = netlink.LinkByName(l.Bridge); err != nil {
			return nil, err
		}
	}
	if err := addAddr(br, netip.PrefixFrom(l.ServerIP(), 24)); err != nil {
		return nil, fmt.Errorf("address lab bridge %s: %w", l.Bridge, err)
	}
	// Pass LLDP (01:80:c2:00:00:0e, bit 14) on, as a switch that shows
	// its hosts to each other would: each host's lldpd sees the others.
	if err := os.WriteFile(filepath.Join("/sys/class/net", l.Bridge, "bridge/group_fwd_mask"), []byte("16384"), 0o644); err != nil {
		return nil, fmt.Errorf("lab bridge %s: forward LLDP: %w", l.Bridge, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bring lab bridge %s up: %w", l.Bridge, err)
	}
	return br, nil
}

func addAddr(link netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if err := netlink.AddrReplace(link, a); err != nil {
		return err
	}
	return nil
}

// ensureHost makes host i's namespace and its veth to the bridge: eth0
// in the namespace, with the host's address and a default route via the
// bridge.
func (l *Lab) ensureHost(br netlink.Link, i int) error {
	ns, err := netns.GetFromName(l.Namespace(i))
	if err != nil {
		if ns, err = newNamed(l.Namespace(i)); err != nil {
			return fmt.Errorf("make network namespace %s: %w", l.Namespace(i), err)
		}
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	if _, err := h.LinkByName("eth0"); err != nil {
		_ = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.veth(i)}}) // half-made before
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.MasterIndex = l.veth(i), MTU, br.Attrs().Index
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("make veth %s: %w", l.veth(i), err)
		}
	}
	if v, err := netlink.LinkByName(l.veth(i)); err == nil {
		_ = netlink.LinkSetUp(v)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	_ = h.LinkSetMTU(eth0, MTU)
	a := &netlink.Addr{IPNet: &net.IPNet{IP: l.HostIP(i).AsSlice(), Mask: net.CIDRMask(24, 32)}}
	if err := h.AddrReplace(eth0, a); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	for _, name := range []string{"lo", "eth0"} {
		if link, err := h.LinkByName(name); err == nil {
			if err := h.LinkSetUp(link); err != nil {
				return fmt.Errorf("bring %s up: %w", name, err)
			}
		}
	}
	gw := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: l.ServerIP().AsSlice()}
	if err := h.RouteReplace(gw); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// newNamed makes a named network namespace (as ip netns add does) without
// moving this process into it.
func newNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return netns.None(), err
	}
	defer orig.Close()
	ns, err := netns.NewNamed(name)
	if err != nil {
		return netns.None(), err
	}
	if err := netns.Set(orig); err != nil {
		ns.Close()
		return netns.None(), fmt.Errorf("back to this process's namespace: %w", err)
	}
	return ns, nil
}

// Exec is the command prefix that runs a program in host i's namespace.
func (l *Lab) Exec(i int) []string { return []string{"ip", "netns", "exec", l.Namespace(i)} }

// Remove deletes hosts 1..n's namespaces (the processes in them must be
// gone) and the bridge.
func (l *Lab) Remove(n int) error {
	var errs []error
	for i := 1; i <= n; i++ {
		if err := netns.DeleteNamed(l.Namespace(i)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		_ = netlink.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: l.veth(i)}})
	}
	if br, err := netlink.LinkByName(l.Bridge); err == nil {
		errs = append(errs, netlink.LinkDel(br))
	}
	return errors.Join(errs...)
}
