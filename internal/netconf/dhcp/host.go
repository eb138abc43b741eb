package dhcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// host is one network namespace as Converge changes it.
type host struct {
	ns  netns.NsHandle
	h   *netlink.Handle
	log *slog.Logger
}

func openHost(ns netns.NsHandle, log *slog.Logger) (*host, error) {
	var h *netlink.Handle
	var err error
	if ns == 0 {
		h, err = netlink.NewHandle()
	} else {
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink in network namespace %d: %w", int(ns), err)
	}
	return &host{ns: ns, h: h, log: log}, nil
}

func (h *host) close() { h.h.Close() }

// state is what Converge changed on the host for a service, kept in
// its directory so that a later Converge (in another agent process, if
// need be) can undo it.
type state struct {
	Bridge   string     `json:"bridge"`
	ServerIP netip.Addr `json:"server_ip"`
	// ServerIP6 and LinkLocal6 are the server's IPv6 addresses, when it
	// advertises a prefix.
	ServerIP6  netip.Addr `json:"server_ip6,omitzero"`
	LinkLocal6 netip.Addr `json:"link_local6,omitzero"`
	// OrigMAC is the bridge's MAC before it got ServerMAC.
	OrigMAC string `json:"orig_mac,omitempty"`
}

// isServiceDir says whether dir is a service's directory: it holds the
// service's state or pid file, or nothing (a Converge ended before it
// wrote any).
func isServiceDir(dir string) bool {
	for _, f := range []string{stateFile, pidFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	entries, err := os.ReadDir(dir)
	return err == nil && len(entries) == 0
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read service state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read service state %s: %w", filepath.Join(dir, stateFile), err)
	}
	return &st, nil
}

func writeState(dir string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode service state: %w", err)
	}
	return writeAtomic(filepath.Join(dir, stateFile), append(b, '\n'))
}

// claim readies the service's bridge: the server's addresses on it
// (addrs), its MAC ServerMAC and reverse-path filtering off. It undoes
// what an earlier claim did on another bridge or with other addresses
// first, and records what it changes before changing it. It returns the
// bridge's ifindex.
func (h *host) claim(dir string, s Service) (int, error) {
	old, err := readState(dir)
	if err != nil {
		return 0, err
	}
	st := state{Bridge: s.Bridge, ServerIP: s.ServerIP}
	if s.Prefix6.IsValid() {
		st.ServerIP6, st.LinkLocal6 = ServerIP6(s.PortGroup, s.Prefix6), ServerIP6(s.PortGroup, linkLocal)
	}
	if old != nil && old.Bridge != s.Bridge {
		if err := h.release(old, s.PortGroup); err != nil {
			return 0, err
		}
	} else if old != nil {
		for _, a := range old.addrs() {
			if !slices.Contains(st.addrs(), a) {
				if err := h.delAddr(old.Bridge, a); err != nil {
					return 0, err
				}
			}
		}
	}
	l, err := h.h.LinkByName(s.Bridge)
	if err != nil {
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			return 0, fmt.Errorf("bridge %s does not exist (the switch backend has not made it)", s.Bridge)
		}
		return 0, fmt.Errorf("look up bridge %s: %w", s.Bridge, err)
	}
	mac := ServerMAC(s.PortGroup)
	if old != nil && old.Bridge == s.Bridge {
		st.OrigMAC = old.OrigMAC
	}
	if cur := l.Attrs().HardwareAddr; st.OrigMAC == "" && !bytes.Equal(cur, mac) {
		st.OrigMAC = cur.String()
	}
	if old == nil || *old != st {
		if err := writeState(dir, st); err != nil {
			return 0, err
		}
	}
	log := h.log.With("portgroup", s.PortGroup, "bridge", s.Bridge)
	if !bytes.Equal(l.Attrs().HardwareAddr, mac) {
		if err := h.h.LinkSetHardwareAddr(l, mac); err != nil {
			return 0, fmt.Errorf("give bridge %s the DHCP server's MAC %s: %w", s.Bridge, mac, err)
		}
		log.Info("bridge has the DHCP server's MAC", "mac", mac.String(), "was", st.OrigMAC)
	}
	for _, a := range st.addrs() {
		if err := h.addAddr(l, a, log); err != nil {
			return 0, err
		}
	}
	if s.Subnet.IsValid() {
		h.noRPFilter(s.Bridge, log)
	}
	return l.Attrs().Index, nil
}

// addrs are the addresses the service's server has on its bridge.
func (st *state) addrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{st.ServerIP, st.ServerIP6, st.LinkLocal6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// release undoes claim on st's bridge: the addresses go, and the
// bridge's MAC, if it still is the server's, goes back to what it was.
// A bridge that is gone needs nothing.
func (h *host) release(st *state, portGroup string) error {
	for _, a := range st.addrs() {
		if err := h.delAddr(st.Bridge, a); err != nil {
			return err
		}
	}
	l, err := h.h.LinkByName(st.Bridge)
	if err != nil {
		return nil
	}
	orig, err := net.ParseMAC(st.OrigMAC)
	if err != nil || !bytes.Equal(l.Attrs().HardwareAddr, ServerMAC(portGroup)) {
		return nil
	}
	if err := h.h.LinkSetHardwareAddr(l, orig); err != nil {
		return fmt.Errorf("give bridge %s its MAC %s back: %w", st.Bridge, orig, err)
	}
	h.log.Info("bridge has its own MAC back", "bridge", st.Bridge, "mac", orig.String())
	return nil
}

// offHostPorts are the ports of the service's bridge that lead off the
// host: those there now whose names do not start with VMPortPrefix, and
// the port group's VXLAN and VLAN devices' names as the bridge backend
// makes them, so that such a device made after this Converge is
// covered already.
func (h *host) offHostPorts(s Service) []string {
	ports := []string{netconf.VXLANName(s.PortGroup), netconf.VLANName(s.PortGroup)}
	br, err := h.h.LinkByName(s.Bridge)
	if err != nil {
		return ports
	}
	links, err := h.h.LinkList()
	if err != nil {
		h.log.Warn("cannot list the bridge's ports", "bridge", s.Bridge, "err", err)
		return ports
	}
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == br.Attrs().Index && !strings.HasPrefix(a.Name, VMPortPrefix) && !slices.Contains(ports, a.Name) {
			ports = append(ports, a.Name)
		}
	}
	return ports
}

// serverAddr is how a server's address goes on its bridge: an IPv4 one
// as a /32 (see the package doc); an IPv6 one as a /64, so that dnsmasq
// finds the prefix it advertises by it, but with no prefix route (the
// host is not on the guests' network) and no duplicate address
// detection (every host has it; its frames never leave the host).
func serverAddr(ip netip.Addr) *netlink.Addr {
	if ip.Is4() {
		return &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(64, 128)}, Flags: unix.IFA_F_NODAD}
	if !ip.IsLinkLocalUnicast() {
		a.Flags |= unix.IFA_F_NOPREFIXROUTE
	}
	return a
}

func (h *host) addAddr(l netlink.Link, ip netip.Addr, log *slog.Logger) error {
	have, err := h.hasAddr(l, ip)
	if err != nil || have {
		return err
	}
	a := serverAddr(ip)
	if err := h.h.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add the DHCP server's address %s to bridge %s: %w", a.IPNet, l.Attrs().Name, err)
	}
	log.Info("DHCP server address added", "addr", a.IPNet.String())
	return nil
}

// delAddr removes the server's address ip from bridge, if both are there.
func (h *host) delAddr(bridge string, ip netip.Addr) error {
	l, err := h.h.LinkByName(bridge)
	if err != nil || !ip.IsValid() {
		return nil
	}
	have, err := h.hasAddr(l, ip)
	if err != nil || !have {
		return err
	}
	a := serverAddr(ip)
	if err := h.h.AddrDel(l, a); err != nil {
		return fmt.Errorf("remove the DHCP server's address %s from bridge %s: %w", a.IPNet, bridge, err)
	}
	h.log.Info("DHCP server address removed", "bridge", bridge, "addr", a.IPNet.String())
	return nil
}

func (h *host) hasAddr(l netlink.Link, ip netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := h.h.AddrList(l, family)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	want, _ := serverAddr(ip).Mask.Size()
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		if got, ok := netip.AddrFromSlice(a.IP); ok && got.Unmap() == ip && ones == want {
			return true, nil
		}
	}
	return false, nil
}

// noRPFilter turns reverse-path filtering off on the bridge: there is
// no route to the subnet (only the server's /32), so a strict filter
// would drop the guests' unicast renewals and ARP requests. The
// kernel uses the larger of the bridge's and "all"'s setting, so a
// strict "all" is reported, not overridden.
func (h *host) noRPFilter(bridge string, log *slog.Logger) {
	dev := "/proc/sys/net/ipv4/conf/" + bridge + "/rp_filter"
	var all string
	err := inNS(h.ns, func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/rp_filter")
		all = strings.TrimSpace(string(b))
		if err != nil {
			return err
		}
		if b, err = os.ReadFile(dev); err != nil || strings.TrimSpace(string(b)) == "0" {
			return err
		}
		return os.WriteFile(dev, []byte("0\n"), 0o644)
	})
	if err != nil {
		log.Warn("cannot turn reverse-path filtering off on the bridge", "err", err)
	}
	if all == "1" {
		log.Warn("net.ipv4.conf.all.rp_filter is 1 (strict): guests' DHCP renewals will be dropped; set it to 0 or 2")
	}
}

// inNS runs fn on an OS thread switched into ns (0: as it is), for what
// netlink cannot aim at a namespace: forking dnsmasq, /proc/sys/net.
// The thread goes back to its namespace after; if it cannot, it stays
// locked and dies with the goroutine.
func inNS(ns netns.NsHandle, fn func() error) error {
	if ns == 0 {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", ns, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return fmt.Errorf("return to network namespace %s: %w", orig, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}
