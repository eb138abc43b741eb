package bridge_test

import (
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/bridge"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
)

func newBackend(t *testing.T, ns netns.NsHandle) netconf.Backend {
	t.Helper()
	b, err := bridge.New(bridge.Options{NetNS: ns, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("new bridge backend: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestConformance(t *testing.T) { netconftest.Run(t, newBackend) }

// The devices are what the package promises: a bridge per port group,
// the VXLAN device in it (VNI, local, port 4789, learning, bound to the
// uplink), taps in it, all with the backend's alias; the flood list is
// exactly the peers, also after they change.
func TestDevicesAndFloodList(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 3})
	h0 := lab.Hosts[0]
	b := newBackend(t, h0.NS)
	port := netconftest.NIC("vm-a", 0, "pg-web")
	with := func(peers ...netip.Addr) netconf.Host {
		return netconf.Host{
			Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.VXLANGroup("pg-web", 4242, peers...))},
			Ports:    []netconf.Port{port},
		}
	}
	netconftest.ConvergeClean(t, b, with(lab.Hosts[1].IPv4, lab.Hosts[2].IPv4))
	h := h0.Handle()
	br := link(t, h, netconf.BridgeName("pg-web"))
	if _, ok := br.(*netlink.Bridge); !ok || br.Attrs().Alias != "vdc/bridge: portgroup pg-web (switch sw1)" || br.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("bridge %s: a %s, alias %q, flags %v", br.Attrs().Name, br.Type(), br.Attrs().Alias, br.Attrs().Flags)
	}
	vx, ok := link(t, h, netconf.VXLANName("pg-web")).(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is not a VXLAN device", netconf.VXLANName("pg-web"))
	}
	uplink := link(t, h, h0.Uplink)
	switch {
	case vx.VxlanId != 4242, !vx.SrcAddr.Equal(h0.IPv4.AsSlice()), vx.Port != 4789, !vx.Learning:
		t.Errorf("VXLAN device: VNI %d, local %s, port %d, learning %v", vx.VxlanId, vx.SrcAddr, vx.Port, vx.Learning)
	case vx.Group != nil && !vx.Group.IsUnspecified():
		t.Errorf("VXLAN device has multicast group %s", vx.Group)
	case vx.VtepDevIndex != uplink.Attrs().Index:
		t.Errorf("VXLAN device bound to ifindex %d, want the uplink's %d", vx.VtepDevIndex, uplink.Attrs().Index)
	case vx.MasterIndex != br.Attrs().Index || vx.MTU != 1500 || vx.Alias != "vdc/bridge: vxlan 4242 of portgroup pg-web (switch sw1)":
		t.Errorf("VXLAN device: master %d (bridge %d), MTU %d, alias %q", vx.MasterIndex, br.Attrs().Index, vx.MTU, vx.Alias)
	}
	tap, ok := link(t, h, port.Tap).(*netlink.Tuntap)
	if !ok || tap.Mode != netlink.TUNTAP_MODE_TAP || tap.MasterIndex != br.Attrs().Index || tap.Alias != "vdc/bridge: vm vm-a nic0" {
		t.Fatalf("tap %s: %+v", port.Tap, link(t, h, port.Tap).Attrs())
	}
	if want := append(net.HardwareAddr{0xfe}, port.MAC[1:]...); !slices.Equal(tap.HardwareAddr, want) {
		t.Errorf("tap MAC %s, want %s (the guest's with fe first)", tap.HardwareAddr, want)
	}

	requireFlood(t, h, vx, lab.Hosts[1].IPv4, lab.Hosts[2].IPv4)
	netconftest.ConvergeClean(t, b, with(lab.Hosts[1].IPv4, lab.Hosts[2].IPv4))
	requireFlood(t, h, vx, lab.Hosts[1].IPv4, lab.Hosts[2].IPv4)
	netconftest.ConvergeClean(t, b, with(lab.Hosts[2].IPv4))
	requireFlood(t, h, vx, lab.Hosts[2].IPv4)
	netconftest.ConvergeClean(t, b, with(lab.Hosts[1].IPv4, lab.Hosts[2].IPv4, h0.IPv4))
	requireFlood(t, h, vx, lab.Hosts[1].IPv4, lab.Hosts[2].IPv4)
	netconftest.ConvergeClean(t, b, with())
	requireFlood(t, h, vx)
	if again := link(t, h, vx.Name); again.Attrs().Index != vx.Index {
		t.Errorf("peer changes remade the VXLAN device: ifindex %d, was %d", again.Attrs().Index, vx.Index)
	}
}

func link(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("device %s: %v", name, err)
	}
	return l
}

// requireFlood checks that the VXLAN device's all-zeros FDB entries are
// exactly peers, once each.
func requireFlood(t *testing.T, h *netlink.Handle, vx *netlink.Vxlan, peers ...netip.Addr) {
	t.Helper()
	fdb, err := h.NeighList(vx.Index, unix.AF_BRIDGE)
	if err != nil {
		t.Fatalf("list the FDB of %s: %v", vx.Name, err)
	}
	var got []string
	for _, n := range fdb {
		if n.Flags&netlink.NTF_SELF != 0 && n.IP != nil && slices.Equal(n.HardwareAddr, net.HardwareAddr{0, 0, 0, 0, 0, 0}) {
			got = append(got, n.IP.String())
		}
	}
	var want []string
	for _, p := range peers {
		want = append(want, p.String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("flood list of %s is %v, want %v", vx.Name, got, want)
	}
}

// VLAN port groups on this backend need the kernel's 8021q: where it is
// missing, Caps and the report say so by name; where it is there, the
// sub-interface of the uplink is in the port group's bridge.
func TestVLANNeeds8021q(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newBackend(t, h0.NS)
	sw := netconftest.SwitchOn(h0, "sw1", netconftest.VLANGroup("pg-v10", 10))
	sw.Uplinks = []string{h0.Uplink}
	want := netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{netconftest.NIC("vm-a", 0, "pg-v10")}}
	caps := b.Caps(t.Context())
	rep := netconftest.Converge(t, b, want)
	if caps.VLAN != nil {
		t.Logf("no VLANs: %v", caps.VLAN)
		if !strings.Contains(caps.VLAN.Error(), "8021q") {
			t.Errorf("Caps.VLAN does not name 8021q: %v", caps.VLAN)
		}
		err := netconftest.PortGroupErr(rep, "sw1", "pg-v10")
		if err == nil || !strings.Contains(err.Error(), "8021q") || !strings.Contains(err.Error(), "VLAN 10") {
			t.Fatalf("VLAN port group reported %v, want an error naming 8021q and VLAN 10", err)
		}
		if _, err := h0.Handle().LinkByName(netconf.VLANName("pg-v10")); err == nil {
			t.Error("a VLAN device was made although the kernel has no 8021q")
		}
		return
	}
	netconftest.RequireClean(t, rep, want)
	vl, ok := link(t, h0.Handle(), netconf.VLANName("pg-v10")).(*netlink.Vlan)
	br := link(t, h0.Handle(), netconf.BridgeName("pg-v10"))
	if !ok || vl.VlanId != 10 || vl.ParentIndex != link(t, h0.Handle(), h0.Uplink).Attrs().Index || vl.MasterIndex != br.Attrs().Index {
		t.Fatalf("VLAN device: %+v", vl)
	}
}

// A foreign device with the name of a port group's bridge is reported,
// left alone, and the port group's ports stay unattached.
func TestForeignBridgeName(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	foreign := h0.MakeForeignBridge(t, netconf.BridgeName("pg-x"), "")
	b := newBackend(t, h0.NS)
	p := netconftest.NIC("vm-a", 0, "pg-x")
	rep := netconftest.Converge(t, b, netconf.Host{
		Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))},
		Ports:    []netconf.Port{p},
	})
	if err := netconftest.PortGroupErr(rep, "sw1", "pg-x"); err == nil || !strings.Contains(err.Error(), "not made by vdc") {
		t.Errorf("port group on a foreign bridge reported %v", err)
	}
	if err := rep.Ports[p.Tap]; err == nil {
		t.Error("port of an unrealized port group reported attached")
	}
	if tap := h0.Link(t, p.Tap); tap.Master != 0 {
		t.Errorf("tap attached to ifindex %d", tap.Master)
	}
	if now := h0.Link(t, foreign.Name); now != foreign {
		t.Errorf("foreign bridge changed: %+v, now %+v", foreign, now)
	}
}

// A device of ours that an agent killed mid-creation left without its
// alias (vdc's device group and our name scheme, no alias) is taken over
// when wanted and removed when not; the same without the group is
// someone else's and stays.
func TestHalfMadeDevicesAreOurs(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	h := h0.Handle()
	for _, br := range []struct {
		name  string
		group uint32
	}{{netconf.BridgeName("pg-wanted"), netconf.DeviceGroup}, {netconf.BridgeName("pg-gone"), netconf.DeviceGroup}, {netconf.BridgeName("pg-other"), 0}} {
		la := netlink.NewLinkAttrs()
		la.Name, la.Group = br.name, br.group
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			t.Fatalf("make bridge %s: %v", br.name, err)
		}
	}
	wanted := h0.Link(t, netconf.BridgeName("pg-wanted"))
	other := h0.Link(t, netconf.BridgeName("pg-other"))
	b := newBackend(t, h0.NS)
	netconftest.ConvergeClean(t, b, netconf.Host{
		Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-wanted"))},
	})
	links := h0.Links(t)
	if got := links[wanted.Name]; got.Index != wanted.Index || got.Alias != "vdc/bridge: portgroup pg-wanted (switch sw1)" {
		t.Errorf("half-made wanted bridge: %+v, was %+v", got, wanted)
	}
	if _, ok := links[netconf.BridgeName("pg-gone")]; ok {
		t.Error("half-made bridge of no port group was not removed")
	}
	if links[other.Name] != other {
		t.Errorf("bridge outside vdc's device group changed: %+v, now %+v", other, links[other.Name])
	}
}
