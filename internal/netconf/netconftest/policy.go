package netconftest

import (
	"math"
	"net"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/netconf"
)

// RunPolicy runs the port-group policy cases against a backend that
// enforces policies (the bridge backend with its policy.Enforcer, the
// ovs backend as it is). Like Run, it needs root.
func RunPolicy(t *testing.T, nb NewBackend) {
	cases := []struct {
		name string
		fn   func(*testing.T, NewBackend)
	}{
		{"ForgedTransmits", testForgedTransmits},
		{"MACChangesAndPromiscuous", testMACChanges},
		{"ForgedAllowedMACChangesNot", testForgedNotLearned},
		{"ShapingOut", func(t *testing.T, nb NewBackend) { testShaping(t, nb, false) }},
		{"ShapingIn", func(t *testing.T, nb NewBackend) { testShaping(t, nb, true) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, nb) })
	}
}

// otherMAC is an address no NIC of the suite has.
var otherMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0xee, 0xee, 0xee}

func withPolicy(pg netconf.PortGroup, p netconf.Policy) netconf.PortGroup {
	pg.Policy = p
	return pg
}

// A guest that sends from a MAC other than its NIC's sends nothing,
// unless its port group allows forged transmits; frames from its own
// MAC pass either way.
func testForgedTransmits(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	a, b := NIC("vm-a", 0, "pg-strict"), NIC("vm-b", 0, "pg-strict")
	c, d := NIC("vm-c", 0, "pg-forge"), NIC("vm-d", 0, "pg-forge")
	sw := SwitchOn(h0, "sw1", IsolatedGroup("pg-strict"),
		withPolicy(IsolatedGroup("pg-forge"), netconf.Policy{AllowForgedTransmits: true}))
	ConvergeClean(t, nb(t, h0.NS), netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{a, b, c, d}})
	ta, tb, tc, td := h0.OpenTap(t, a.Tap), h0.OpenTap(t, b.Tap), h0.OpenTap(t, c.Tap), h0.OpenTap(t, d.Tap)
	Deliver(t, 60, ta, []*Tap{tb}, []*Tap{tc, td})
	Blocked(t, NewFrame(60).From(otherMAC), NewFrame(60).From(a.MAC), ta, []*Tap{tb})
	Blocked(t, NewFrame(60).From(otherMAC).To(b.MAC), NewFrame(60).From(a.MAC).To(b.MAC), ta, []*Tap{tb})
	DeliverFrame(t, NewFrame(60).From(otherMAC), tc, []*Tap{td}, []*Tap{ta, tb})
}

// A guest receives only unicast to its own MAC (and every broadcast and
// multicast), unless its port group allows MAC changes or promiscuous
// mode: unknown unicast, flooded to every port, does not reach it.
func testMACChanges(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	a, b := NIC("vm-a", 0, "pg-strict"), NIC("vm-b", 0, "pg-strict")
	c, d := NIC("vm-c", 0, "pg-mac"), NIC("vm-d", 0, "pg-mac")
	e, f := NIC("vm-e", 0, "pg-promisc"), NIC("vm-f", 0, "pg-promisc")
	sw := SwitchOn(h0, "sw1", IsolatedGroup("pg-strict"),
		withPolicy(IsolatedGroup("pg-mac"), netconf.Policy{AllowMACChanges: true}),
		withPolicy(IsolatedGroup("pg-promisc"), netconf.Policy{AllowPromiscuous: true}))
	ConvergeClean(t, nb(t, h0.NS), netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{a, b, c, d, e, f}})
	ta, tb := h0.OpenTap(t, a.Tap), h0.OpenTap(t, b.Tap)
	tc, td, te, tf := h0.OpenTap(t, c.Tap), h0.OpenTap(t, d.Tap), h0.OpenTap(t, e.Tap), h0.OpenTap(t, f.Tap)
	// Unicast to b before b has sent anything reaches it.
	DeliverFrame(t, NewFrame(60).From(a.MAC).To(b.MAC), ta, []*Tap{tb}, nil)
	Blocked(t, NewFrame(60).From(a.MAC).To(otherMAC), NewFrame(60).From(a.MAC), ta, []*Tap{tb})
	DeliverFrame(t, NewFrame(60).From(c.MAC).To(otherMAC), tc, []*Tap{td}, []*Tap{tb})
	DeliverFrame(t, NewFrame(60).From(e.MAC).To(otherMAC), te, []*Tap{tf}, []*Tap{tb, td})
	// Multicast (IPv6 all-nodes) reaches a guarded guest.
	DeliverFrame(t, NewFrame(60).From(a.MAC).To(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}), ta, []*Tap{tb}, nil)
}

// With forged transmits allowed and MAC changes not, a guest may send
// from another MAC, but unicast to that MAC does not come back to it:
// the switch must not take the forged source for the guest's.
func testForgedNotLearned(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	a, b := NIC("vm-a", 0, "pg-x"), NIC("vm-b", 0, "pg-x")
	sw := SwitchOn(h0, "sw1", withPolicy(IsolatedGroup("pg-x"), netconf.Policy{AllowForgedTransmits: true}))
	ConvergeClean(t, nb(t, h0.NS), netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{a, b}})
	ta, tb := h0.OpenTap(t, a.Tap), h0.OpenTap(t, b.Tap)
	DeliverFrame(t, NewFrame(60).From(otherMAC), ta, []*Tap{tb}, nil)
	Blocked(t, NewFrame(60).From(b.MAC).To(otherMAC), NewFrame(60).From(b.MAC), tb, []*Tap{ta})
	DeliverFrame(t, NewFrame(60).From(b.MAC).To(a.MAC), tb, []*Tap{ta}, nil)
}

// A shaped port group passes what its guests send (Out) or receive (In)
// at its average rate, within 15 %, when three times that is offered.
func testShaping(t *testing.T, nb NewBackend, in bool) {
	const limit = 20e6
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	shape := netconf.Shape{AverageBitsPerSec: limit}
	pol := netconf.Policy{Out: shape}
	if in {
		pol = netconf.Policy{In: shape}
	}
	a, b := NIC("vm-a", 0, "pg-shaped"), NIC("vm-b", 0, "pg-shaped")
	sw := SwitchOn(h0, "sw1", withPolicy(IsolatedGroup("pg-shaped"), pol))
	ConvergeClean(t, nb(t, h0.NS), netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{a, b}})
	ta, tb := h0.OpenTap(t, a.Tap), h0.OpenTap(t, b.Tap)
	// Both taps learned (and up) before measuring.
	DeliverFrame(t, NewFrame(60).From(a.MAC).To(b.MAC), ta, []*Tap{tb}, nil)
	DeliverFrame(t, NewFrame(60).From(b.MAC).To(a.MAC), tb, []*Tap{ta}, nil)
	got := MeasureRate(t, ta, tb, 1514, 3*limit, 3*time.Second)
	if math.Abs(got-limit)/limit > 0.15 {
		t.Errorf("shaped to %.0f Mbit/s, measured %.2f Mbit/s (more than 15 %% off)", limit/1e6, got/1e6)
	}
}
