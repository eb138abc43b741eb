package ovs_test

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/netconf/ovs"
	"github.com/vdc-project/vdc/internal/netconf/tap"
)

// addrsOf lists the global addresses of a device.
func addrsOf(t *testing.T, h *netconftest.Host, dev string) []string {
	t.Helper()
	l, err := h.Handle().LinkByName(dev)
	if err != nil {
		t.Fatalf("%s on %s: %v", dev, h.Name, err)
	}
	as, err := h.Handle().AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		if !a.IP.IsLinkLocalUnicast() {
			out = append(out, a.IPNet.String())
		}
	}
	slices.Sort(out)
	return out
}

// routeDev is the device the route to dst leaves by.
func routeDev(t *testing.T, h *netconftest.Host, dst string) string {
	t.Helper()
	rs, err := h.Handle().RouteGet(net.ParseIP(dst))
	if err != nil || len(rs) == 0 {
		t.Fatalf("route to %s on %s: %v", dst, h.Name, err)
	}
	l, err := h.Handle().LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Name
}

// tcpReaches says whether a TCP connection from h to addr:port opens,
// made from inside h's namespace (the host's own traffic, as the agent's
// heartbeats).
func tcpReaches(t *testing.T, h *netconftest.Host, addr netip.AddrPort) error {
	t.Helper()
	var conn net.Conn
	err := tap.InNS(h.NS, func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr.String(), 5*time.Second)
		return err
	})
	if err == nil {
		conn.Close()
	}
	return err
}

func listenIn(t *testing.T, h *netconftest.Host, addr netip.Addr) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := tap.InNS(h.NS, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, h.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// With the userspace datapath, VXLAN needs its tunnel endpoint routed
// through OVS: the uplink goes into an uplink bridge whose internal port
// takes the uplink's addresses and routes (the host keeps reaching the
// other hosts through it), and gets them back when the last switch that
// needs it goes. The uplink itself is as it was.
func TestUplinkAddressesMoveAndComeBack(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 2})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	b := newOVS(t, h0.NS)
	if dp, _ := b.Datapath(); dp != ovs.DatapathNetdev {
		t.Skipf("the kernel datapath routes tunnels itself (datapath %s)", dp)
	}
	up := h0.Link(t, h0.Uplink)
	route := &netlink.Route{LinkIndex: up.Index, Dst: &net.IPNet{IP: net.IPv4(198, 51, 100, 0), Mask: net.CIDRMask(24, 32)}, Gw: net.IPv4(192, 0, 2, 254)}
	if err := h0.Handle().RouteAdd(route); err != nil {
		t.Fatalf("add a route through the uplink: %v", err)
	}
	addrs := addrsOf(t, h0, h0.Uplink)
	peerAddr := listenIn(t, h1, h1.IPv4)
	want := netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.VXLANGroup("pg-web", 100, h1.IPv4))}}
	netconftest.ConvergeClean(t, b, want)

	ub := ovs.UplinkBridgeName([]string{h0.Uplink})
	if got := addrsOf(t, h0, ub); !slices.Equal(got, addrs) {
		t.Errorf("addresses on %s: %v, want the uplink's %v", ub, got, addrs)
	}
	if got := addrsOf(t, h0, h0.Uplink); len(got) != 0 {
		t.Errorf("the uplink kept addresses %v", got)
	}
	if dev := routeDev(t, h0, "198.51.100.7"); dev != ub {
		t.Errorf("the route through the uplink now leaves by %s, want %s", dev, ub)
	}
	if l := h0.Link(t, ub); l.MAC != up.MAC || !l.Up || l.MTU != up.MTU || !strings.HasPrefix(l.Alias, "vdc/ovs: uplink") {
		t.Errorf("internal port %+v, want up, MTU %d, the uplink's MAC %s and vdc's alias", l, up.MTU, up.MAC)
	}
	if ports := strings.Fields(vsctl(t, b.Dir(), "list-ports", ub)); !slices.Contains(ports, h0.Uplink) {
		t.Errorf("uplink bridge %s has ports %v, want %s among them", ub, ports, h0.Uplink)
	}
	if err := tcpReaches(t, h0, peerAddr); err != nil {
		t.Errorf("the host cannot reach %s through the uplink bridge: %v", peerAddr, err)
	}
	netconftest.ConvergeClean(t, b, want)
	if got := addrsOf(t, h0, ub); !slices.Equal(got, addrs) {
		t.Errorf("after a second converge, addresses on %s: %v", ub, got)
	}

	netconftest.ConvergeClean(t, b, netconf.Host{})
	if got := addrsOf(t, h0, h0.Uplink); !slices.Equal(got, addrs) {
		t.Errorf("the uplink has addresses %v after the last switch went, want its own %v back", got, addrs)
	}
	if dev := routeDev(t, h0, "198.51.100.7"); dev != h0.Uplink {
		t.Errorf("the route is through %s after the last switch went, want %s", dev, h0.Uplink)
	}
	if _, ok := h0.Links(t)[ub]; ok {
		t.Errorf("uplink bridge %s is still there", ub)
	}
	if now := h0.Link(t, h0.Uplink); now != up {
		t.Errorf("the uplink changed: %+v, now %+v", up, now)
	}
	if err := tcpReaches(t, h0, peerAddr); err != nil {
		t.Errorf("the host cannot reach %s through its uplink again: %v", peerAddr, err)
	}
	if err := h0.Handle().RouteDel(route); err != nil && err != unix.ESRCH {
		t.Errorf("the route given back is not the one added: %v", err)
	}
}

// With the userspace datapath and VLAN port groups only, the uplink is
// in OVS (the trunk) but keeps its addresses: OVS reads copies of its
// frames, and the host's own traffic does not go through OVS.
func TestVLANUplinkKeepsAddresses(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 2})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	b := newOVS(t, h0.NS)
	if dp, _ := b.Datapath(); dp != ovs.DatapathNetdev {
		t.Skipf("the kernel datapath takes an uplink's frames from the host (datapath %s)", dp)
	}
	addrs := addrsOf(t, h0, h0.Uplink)
	peerAddr := listenIn(t, h1, h1.IPv4)
	sw := netconftest.SwitchOn(h0, "sw1", netconftest.VLANGroup("pg-v10", 10))
	sw.Uplinks = []string{h0.Uplink}
	netconftest.ConvergeClean(t, b, netconf.Host{Switches: []netconf.Switch{sw}})
	ub := ovs.UplinkBridgeName([]string{h0.Uplink})
	if ports := strings.Fields(vsctl(t, b.Dir(), "list-ports", ub)); !slices.Contains(ports, h0.Uplink) {
		t.Fatalf("uplink bridge %s has ports %v, want %s among them", ub, ports, h0.Uplink)
	}
	if got := addrsOf(t, h0, h0.Uplink); !slices.Equal(got, addrs) {
		t.Errorf("the uplink of a VLAN-only switch has addresses %v, want its own %v", got, addrs)
	}
	if got := addrsOf(t, h0, ub); len(got) != 0 {
		t.Errorf("the uplink bridge's internal port took addresses %v", got)
	}
	if err := tcpReaches(t, h0, peerAddr); err != nil {
		t.Errorf("the host cannot reach %s with its uplink in OVS: %v", peerAddr, err)
	}
}
