package netconftest

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/netconf"
)

// Isolated: a port group's VMs on one host reach each other, and not
// the same port group's VMs on another host.
func testIsolated(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	a, b, c := NIC("vm-a", 0, "pg-iso"), NIC("vm-b", 0, "pg-iso"), NIC("vm-c", 0, "pg-iso")
	b0, b1 := nb(t, h0.NS), nb(t, h1.NS)
	want0 := netconf.Host{Switches: []netconf.Switch{SwitchOn(h0, "sw1", IsolatedGroup("pg-iso"))}, Ports: []netconf.Port{a, b}}
	want1 := netconf.Host{Switches: []netconf.Switch{SwitchOn(h1, "sw1", IsolatedGroup("pg-iso"))}, Ports: []netconf.Port{c}}
	ConvergeClean(t, b0, want0)
	ConvergeClean(t, b1, want1)
	for _, p := range want0.Ports {
		requireTap(t, h0, b0.Name(), p, true, netconf.DefaultMTU)
	}
	ta, tb, tc := h0.OpenTap(t, a.Tap), h0.OpenTap(t, b.Tap), h1.OpenTap(t, c.Tap)
	Deliver(t, 60, ta, []*Tap{tb}, []*Tap{tc})
	Deliver(t, 60, tb, []*Tap{ta}, []*Tap{tc})
}

// VXLAN: a frame from a VM reaches the same port group's VMs on the
// other host, full-size, and not another port group's.
func testVXLAN(t *testing.T, nb NewBackend, ipv6 bool) {
	lab := NewLab(t, LabOptions{Hosts: 2, UnderlayMTU: 1600})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	ip := func(h *Host) netip.Addr {
		if ipv6 {
			return h.IPv6
		}
		return h.IPv4
	}
	wantOn := func(h, peer *Host, vm string) netconf.Host {
		sw := SwitchOn(h, "sw1", VXLANGroup("pg-web", 100, ip(peer)), VXLANGroup("pg-db", 200, ip(peer)))
		sw.LocalIP = ip(h)
		return netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{NIC(vm, 0, "pg-web"), NIC(vm, 1, "pg-db")}}
	}
	want0, want1 := wantOn(h0, h1, "vm-a"), wantOn(h1, h0, "vm-b")
	ConvergeClean(t, nb(t, h0.NS), want0)
	ConvergeClean(t, nb(t, h1.NS), want1)
	aWeb, aDB := h0.OpenTap(t, want0.Ports[0].Tap), h0.OpenTap(t, want0.Ports[1].Tap)
	bWeb, bDB := h1.OpenTap(t, want1.Ports[0].Tap), h1.OpenTap(t, want1.Ports[1].Tap)
	Deliver(t, 60, aWeb, []*Tap{bWeb}, []*Tap{bDB, aDB})
	Deliver(t, 60, aDB, []*Tap{bDB}, []*Tap{bWeb, aWeb})
	Deliver(t, 60, bWeb, []*Tap{aWeb}, []*Tap{aDB, bDB})
	// A frame of the full MTU (1500 bytes of payload) crosses the
	// underlay in one piece.
	Deliver(t, 14+netconf.DefaultMTU, aWeb, []*Tap{bWeb}, []*Tap{bDB})
}

// richWant has one of everything, for the cases that compare states.
func richWant(h *Host, peers ...netip.Addr) netconf.Host {
	down := NIC("vm-r", 2, "pg-iso")
	down.Down = true
	return netconf.Host{
		Switches: []netconf.Switch{
			SwitchOn(h, "sw1", VXLANGroup("pg-web", 100, peers...), VXLANGroup("pg-db", 200, peers...), IsolatedGroup("pg-iso")),
			SwitchOn(h, "sw2", VXLANGroup("pg-lab", 300, peers...)),
		},
		Ports: []netconf.Port{NIC("vm-r", 0, "pg-web"), NIC("vm-r", 1, "pg-db"), down, NIC("vm-s", 0, "pg-lab"), NIC("vm-s", 1, "pg-web")},
	}
}

// requireSame fails when the host's devices changed.
func requireSame(t testing.TB, what string, before, after map[string]Link) {
	t.Helper()
	if reflect.DeepEqual(before, after) {
		return
	}
	for _, name := range slices.Sorted(maps.Keys(before)) {
		if b, a := before[name], after[name]; b != a {
			t.Errorf("%s: %s was %+v, now %+v", what, name, b, a)
		}
	}
	for name, a := range after {
		if _, ok := before[name]; !ok {
			t.Errorf("%s: %s appeared: %+v", what, name, a)
		}
	}
}

// A second Converge of the same state changes no device at all.
func testIdempotent(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2})
	h0 := lab.Hosts[0]
	b := nb(t, h0.NS)
	want := richWant(h0, lab.Hosts[1].IPv4)
	ConvergeClean(t, b, want)
	first := h0.Links(t)
	if n := len(h0.VDCDevices(t)); n < len(want.Ports)+4 {
		t.Fatalf("only %d vdc devices after converging %d ports on 4 port groups", n, len(want.Ports))
	}
	ConvergeClean(t, b, want)
	requireSame(t, "second converge", first, h0.Links(t))
}

// A new backend instance (the agent restarted) takes over what the last
// one made: same devices, same ifindexes, traffic still flows.
func testRestart(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	want0, want1 := richWant(h0, h1.IPv4), richWant(h1, h0.IPv4)
	ConvergeClean(t, nb(t, h0.NS), want0)
	ConvergeClean(t, nb(t, h1.NS), want1)
	before := h0.Links(t)
	ConvergeClean(t, nb(t, h0.NS), want0)
	requireSame(t, "converge by a new backend", before, h0.Links(t))
	ConvergeClean(t, nb(t, h0.NS), want0)
	requireSame(t, "converge by a third backend", before, h0.Links(t))
	a, b := h0.OpenTap(t, want0.Ports[0].Tap), h1.OpenTap(t, want1.Ports[0].Tap)
	Deliver(t, 60, a, []*Tap{b}, nil)
}

// Devices of port groups, switches and ports that left the desired
// state go; devices vdc did not make (or another backend made) stay,
// even with a vdc-like name.
func testLeftovers(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2})
	h0 := lab.Hosts[0]
	peer := lab.Hosts[1].IPv4
	foreign := []Link{
		h0.MakeForeignTap(t, netconf.TapName("not-vdc", 0)),
		h0.MakeForeignBridge(t, netconf.BridgeName("not-vdc"), ""),
		h0.MakeForeignBridge(t, "br-operator", "the operator's bridge"),
		h0.MakeForeignBridge(t, "vdcother0", netconf.Alias("another-backend", "portgroup x (switch y)")),
	}
	small := netconf.Host{
		Switches: []netconf.Switch{SwitchOn(h0, "sw1", VXLANGroup("pg-a", 500, peer))},
		Ports:    []netconf.Port{NIC("vm-1", 0, "pg-a")},
	}
	big := netconf.Host{
		Switches: []netconf.Switch{
			SwitchOn(h0, "sw1", VXLANGroup("pg-a", 500, peer), VXLANGroup("pg-b", 501, peer), IsolatedGroup("pg-c")),
			SwitchOn(h0, "sw2", IsolatedGroup("pg-d"), VXLANGroup("pg-e", 502, peer)),
		},
		Ports: []netconf.Port{NIC("vm-1", 0, "pg-a"), NIC("vm-2", 0, "pg-b"), NIC("vm-2", 1, "pg-c"), NIC("vm-3", 0, "pg-d"), NIC("vm-3", 1, "pg-e")},
	}
	b := nb(t, h0.NS)
	all := h0.Links(t)
	ConvergeClean(t, b, small)
	smallDevs := h0.VDCDevices(t)
	ConvergeClean(t, b, big)
	bigDevs := h0.VDCDevices(t)
	for name, l := range smallDevs {
		if bigDevs[name] != l {
			t.Errorf("growing the state changed %s: %+v, now %+v", name, l, bigDevs[name])
		}
	}
	for _, p := range big.Ports {
		requireTap(t, h0, b.Name(), p, true, netconf.DefaultMTU)
	}
	ConvergeClean(t, b, small)
	requireSame(t, "back to the small state", smallDevs, h0.VDCDevices(t))
	for _, p := range big.Ports[1:] {
		if _, ok := h0.Links(t)[p.Tap]; ok {
			t.Errorf("tap %s of a port that left the desired state is still there", p.Tap)
		}
	}
	ConvergeClean(t, b, netconf.Host{})
	if left := h0.VDCDevices(t); len(left) != 1 || left["vdcother0"] == (Link{}) {
		t.Errorf("after converging to nothing, vdc devices left: %v (want only another backend's vdcother0)", slices.Sorted(maps.Keys(left)))
	}
	now := h0.Links(t)
	for _, f := range foreign {
		if now[f.Name] != f {
			t.Errorf("foreign device %s changed: %+v, now %+v", f.Name, f, now[f.Name])
		}
	}
	for name, l := range all {
		if now[name] != l {
			t.Errorf("device %s that was there before vdc changed: %+v, now %+v", name, l, now[name])
		}
	}
}

// The flood list is exactly the peers: a broadcast reaches the peers
// listed, and stops reaching one once it is removed.
func testPeers(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 3})
	h0, h1, h2 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	a, a2, pb, pc := NIC("vm-a", 0, "pg-web"), NIC("vm-a2", 0, "pg-web"), NIC("vm-b", 0, "pg-web"), NIC("vm-c", 0, "pg-web")
	for _, x := range []struct {
		h    *Host
		port netconf.Port
	}{{h1, pb}, {h2, pc}} {
		want := netconf.Host{Switches: []netconf.Switch{SwitchOn(x.h, "sw1", VXLANGroup("pg-web", 100, h0.IPv4))}, Ports: []netconf.Port{x.port}}
		ConvergeClean(t, nb(t, x.h.NS), want)
	}
	b0 := nb(t, h0.NS)
	with := func(peers ...netip.Addr) netconf.Host {
		return netconf.Host{Switches: []netconf.Switch{SwitchOn(h0, "sw1", VXLANGroup("pg-web", 100, peers...))}, Ports: []netconf.Port{a, a2}}
	}
	ConvergeClean(t, b0, with(h1.IPv4))
	ta, ta2, tb, tc := h0.OpenTap(t, a.Tap), h0.OpenTap(t, a2.Tap), h1.OpenTap(t, pb.Tap), h2.OpenTap(t, pc.Tap)
	Deliver(t, 60, ta, []*Tap{ta2, tb}, []*Tap{tc})
	ConvergeClean(t, b0, with(h2.IPv4))
	Deliver(t, 60, ta, []*Tap{ta2, tc}, []*Tap{tb})
	ConvergeClean(t, b0, with(h1.IPv4, h2.IPv4, h0.IPv4)) // itself in the list is ignored
	Deliver(t, 60, ta, []*Tap{ta2, tb, tc}, nil)
	ConvergeClean(t, b0, with())
	Deliver(t, 60, ta, []*Tap{ta2}, []*Tap{tb, tc})
}

// Three hosts, each with every other in its flood list (as the server
// makes them): a broadcast reaches each other host's VM once, and does
// not come back nor go round (a host forwards what a tunnel brings to its
// own ports only).
func testFullMesh(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 3})
	var taps []*Tap
	for i, h := range lab.Hosts {
		var peers []netip.Addr
		for _, o := range lab.Hosts {
			if o != h {
				peers = append(peers, o.IPv4)
			}
		}
		port := NIC(fmt.Sprintf("vm-%d", i), 0, "pg-web")
		ConvergeClean(t, nb(t, h.NS), netconf.Host{Switches: []netconf.Switch{SwitchOn(h, "sw1", VXLANGroup("pg-web", 100, peers...))},
			Ports: []netconf.Port{port}})
		taps = append(taps, h.OpenTap(t, port.Tap))
	}
	Deliver(t, 60, taps[0], taps[1:], nil) // the paths are up
	got := Copies(t, NewFrame(60).From(taps[0].MAC), taps[0], taps)
	if got[taps[0]] != 0 || got[taps[1]] != 1 || got[taps[2]] != 1 {
		t.Fatalf("one broadcast from %s arrived %d, %d and %d times at the three hosts' VMs; want 0, 1, 1 (a loop repeats it)",
			taps[0], got[taps[0]], got[taps[1]], got[taps[2]])
	}
}

// A port moved to another port group keeps its tap (same ifindex, QEMU
// keeps it open) and is then in the new port group only.
func testPortMove(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	p, qx, qy := NIC("vm-p", 0, "pg-x"), NIC("vm-q", 0, "pg-x"), NIC("vm-q", 1, "pg-y")
	b := nb(t, h0.NS)
	sw := SwitchOn(h0, "sw1", IsolatedGroup("pg-x"), IsolatedGroup("pg-y"))
	ConvergeClean(t, b, netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{p, qx, qy}})
	index := h0.Link(t, p.Tap).Index
	tp, tx, ty := h0.OpenTap(t, p.Tap), h0.OpenTap(t, qx.Tap), h0.OpenTap(t, qy.Tap)
	Deliver(t, 60, tp, []*Tap{tx}, []*Tap{ty})
	p.PortGroup = "pg-y"
	ConvergeClean(t, b, netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{p, qx, qy}})
	if got := h0.Link(t, p.Tap).Index; got != index {
		t.Fatalf("moving the port remade its tap: ifindex %d, was %d", got, index)
	}
	Deliver(t, 60, tp, []*Tap{ty}, []*Tap{tx})
	Deliver(t, 60, ty, []*Tap{tp}, []*Tap{tx})
}

// Port.Down sets the tap's link down, and back up, keeping the tap.
func testPortDown(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	p, q := NIC("vm-p", 0, "pg-x"), NIC("vm-q", 0, "pg-x")
	b := nb(t, h0.NS)
	sw := SwitchOn(h0, "sw1", IsolatedGroup("pg-x"))
	p.Down = true
	ConvergeClean(t, b, netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{p, q}})
	index := requireTap(t, h0, b.Name(), p, false, netconf.DefaultMTU).Index
	requireTap(t, h0, b.Name(), q, true, netconf.DefaultMTU)
	p.Down = false
	ConvergeClean(t, b, netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{p, q}})
	if l := requireTap(t, h0, b.Name(), p, true, netconf.DefaultMTU); l.Index != index {
		t.Fatalf("setting the port up remade its tap: ifindex %d, was %d", l.Index, index)
	}
	Deliver(t, 60, h0.OpenTap(t, p.Tap), []*Tap{h0.OpenTap(t, q.Tap)}, nil)
}

// VLAN port groups work where the backend says they do (a frame tagged
// across the lab network reaches the same VLAN on the other host only),
// and where it says they do not, they are reported with that reason
// while the switch's other port groups work.
func testVLAN(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	b0, b1 := nb(t, h0.NS), nb(t, h1.NS)
	wantOn := func(h *Host, vm string) netconf.Host {
		sw := SwitchOn(h, "sw1", VLANGroup("pg-v10", 10), VLANGroup("pg-v20", 20), IsolatedGroup("pg-iso"))
		sw.Uplinks = []string{h.Uplink}
		return netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{
			NIC(vm, 0, "pg-v10"), NIC(vm, 1, "pg-v20"), NIC(vm, 2, "pg-iso"), NIC(vm, 3, "pg-iso"),
		}}
	}
	want0, want1 := wantOn(h0, "vm-a"), wantOn(h1, "vm-b")
	caps := b0.Caps(t.Context())
	if caps.VLAN == nil {
		ConvergeClean(t, b0, want0)
		ConvergeClean(t, b1, want1)
		a10 := h0.OpenTap(t, want0.Ports[0].Tap)
		b10, b20 := h1.OpenTap(t, want1.Ports[0].Tap), h1.OpenTap(t, want1.Ports[1].Tap)
		Deliver(t, 60, a10, []*Tap{b10}, []*Tap{b20})
		return
	}
	t.Logf("%s backend: no VLANs here: %v", b0.Name(), caps.VLAN)
	if !errors.Is(caps.VLAN, netconf.ErrNotSupported) {
		t.Errorf("Caps.VLAN %q does not wrap netconf.ErrNotSupported", caps.VLAN)
	}
	rep := Converge(t, b0, want0)
	for _, pg := range []string{"pg-v10", "pg-v20"} {
		err := PortGroupErr(rep, "sw1", pg)
		if err == nil || !errors.Is(err, netconf.ErrNotSupported) {
			t.Errorf("VLAN port group %s on a host without VLANs reported %v, want an error wrapping ErrNotSupported", pg, err)
		}
	}
	if err := PortGroupErr(rep, "sw1", "pg-iso"); err != nil {
		t.Errorf("isolated port group next to unsupported VLANs: %v", err)
	}
	for _, p := range want0.Ports[2:] {
		if err := rep.Ports[p.Tap]; err != nil {
			t.Errorf("port %s on the isolated port group: %v", p.Tap, err)
		}
	}
	Deliver(t, 60, h0.OpenTap(t, want0.Ports[2].Tap), []*Tap{h0.OpenTap(t, want0.Ports[3].Tap)}, nil)
	again := Converge(t, b0, want0)
	if !reflect.DeepEqual(errorTexts(rep), errorTexts(again)) {
		t.Errorf("a second converge reported differently: %v, then %v", errorTexts(rep), errorTexts(again))
	}
}

func errorTexts(rep netconf.Report) map[string]string {
	out := map[string]string{}
	for sw, sr := range rep.Switches {
		if sr.Err != nil {
			out[sw] = sr.Err.Error()
		}
		for pg, err := range sr.PortGroups {
			if err != nil {
				out[sw+"/"+pg] = err.Error()
			}
		}
	}
	for tap, err := range rep.Ports {
		if err != nil {
			out[tap] = err.Error()
		}
	}
	return out
}

// The switch's MTU is the taps' (the guests'), and frames of that size
// cross hosts.
func testMTU(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2, UnderlayMTU: 1500})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	wantOn := func(h, peer *Host, vm string) netconf.Host {
		sw := SwitchOn(h, "sw1", VXLANGroup("pg-web", 100, peer.IPv4), IsolatedGroup("pg-iso"))
		sw.MTU = 1400
		return netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{NIC(vm, 0, "pg-web"), NIC(vm, 1, "pg-iso")}}
	}
	want0, want1 := wantOn(h0, h1, "vm-a"), wantOn(h1, h0, "vm-b")
	b0 := nb(t, h0.NS)
	ConvergeClean(t, b0, want0)
	ConvergeClean(t, nb(t, h1.NS), want1)
	for _, p := range want0.Ports {
		requireTap(t, h0, b0.Name(), p, true, 1400)
	}
	Deliver(t, 14+1400, h0.OpenTap(t, want0.Ports[0].Tap), []*Tap{h1.OpenTap(t, want1.Ports[0].Tap)}, nil)
}

// A VXLAN port group whose MTU the underlay cannot carry is reported,
// naming the numbers; the switch's other port groups work.
func testMTUTooBig(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2, UnderlayMTU: 1550})
	h0 := lab.Hosts[0]
	sw := SwitchOn(h0, "sw1", VXLANGroup("pg-web", 100, lab.Hosts[1].IPv4), IsolatedGroup("pg-iso"))
	sw.MTU = 9000
	p, q := NIC("vm-a", 0, "pg-iso"), NIC("vm-b", 0, "pg-iso")
	b := nb(t, h0.NS)
	rep := Converge(t, b, netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{p, q}})
	err := PortGroupErr(rep, "sw1", "pg-web")
	if err == nil {
		t.Fatal("a VXLAN port group with MTU 9000 over a 1550-byte underlay was reported realized")
	}
	for _, n := range []string{"9000", "9050", "1550"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("the MTU error does not name %s: %v", n, err)
		}
	}
	if err := PortGroupErr(rep, "sw1", "pg-iso"); err != nil {
		t.Errorf("isolated port group on the same switch: %v", err)
	}
	for _, port := range []netconf.Port{p, q} {
		if err := rep.Ports[port.Tap]; err != nil {
			t.Errorf("port %s: %v", port.Tap, err)
		}
		requireTap(t, h0, b.Name(), port, true, 9000)
	}
	Deliver(t, 60, h0.OpenTap(t, p.Tap), []*Tap{h0.OpenTap(t, q.Tap)}, nil)
}

// A device that vdc did not make but that has a wanted tap's name is
// reported and left alone; the other ports are realized.
func testForeign(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	p, q := NIC("vm-p", 0, "pg-x"), NIC("vm-q", 0, "pg-x")
	foreign := h0.MakeForeignTap(t, p.Tap)
	b := nb(t, h0.NS)
	want := netconf.Host{Switches: []netconf.Switch{SwitchOn(h0, "sw1", IsolatedGroup("pg-x"))}, Ports: []netconf.Port{p, q}}
	for range 2 {
		rep := Converge(t, b, want)
		if err := rep.Ports[p.Tap]; !errors.Is(err, netconf.ErrForeign) {
			t.Errorf("port on a foreign tap reported %v, want an error wrapping ErrForeign", err)
		}
		if err := rep.Ports[q.Tap]; err != nil {
			t.Errorf("port %s: %v", q.Tap, err)
		}
		if now := h0.Link(t, p.Tap); now != foreign {
			t.Fatalf("the foreign tap changed: %+v, now %+v", foreign, now)
		}
	}
}

// Ports on unknown port groups and switches whose tunnel endpoint is not
// on the host are reported; what else is wanted is realized.
func testBadWant(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2})
	h0 := lab.Hosts[0]
	good, lost, stray := NIC("vm-g", 0, "pg-ok"), NIC("vm-l", 0, "pg-far"), NIC("vm-s", 0, "pg-nowhere")
	far := SwitchOn(h0, "sw-far", VXLANGroup("pg-far", 700, lab.Hosts[1].IPv4))
	far.LocalIP = netip.MustParseAddr("203.0.113.9")
	want := netconf.Host{
		Switches: []netconf.Switch{SwitchOn(h0, "sw-ok", VXLANGroup("pg-ok", 600, lab.Hosts[1].IPv4)), far},
		Ports:    []netconf.Port{good, lost, stray},
	}
	b := nb(t, h0.NS)
	rep := Converge(t, b, want)
	if err := rep.Switches["sw-ok"].Err; err != nil {
		t.Errorf("good switch: %v", err)
	}
	if err := PortGroupErr(rep, "sw-ok", "pg-ok"); err != nil {
		t.Errorf("good port group: %v", err)
	}
	if err := rep.Ports[good.Tap]; err != nil {
		t.Errorf("good port: %v", err)
	}
	if err := rep.Switches["sw-far"].Err; err == nil || !strings.Contains(err.Error(), "203.0.113.9") {
		t.Errorf("switch whose local IP is not on the host reported %v, want an error naming 203.0.113.9", err)
	}
	if err := PortGroupErr(rep, "sw-far", "pg-far"); err == nil {
		t.Error("VXLAN port group of a switch without a tunnel endpoint reported realized")
	}
	if err := rep.Ports[stray.Tap]; !errors.Is(err, netconf.ErrInvalid) || !strings.Contains(err.Error(), "pg-nowhere") {
		t.Errorf("port on an unknown port group reported %v, want ErrInvalid naming pg-nowhere", err)
	}
	requireTap(t, h0, b.Name(), good, true, netconf.DefaultMTU)
}

// Teaming: where the backend says it teams uplinks, a switch on two
// keeps its VMs' traffic when the first loses its carrier; where it
// says it does not, it says why, and the switch works on the first.
func testTeaming(t *testing.T, nb NewBackend) {
	lab := NewLab(t, LabOptions{Hosts: 2, SpareUplinks: 1})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	b0 := nb(t, h0.NS)
	sw0 := SwitchOn(h0, "sw1", VXLANGroup("pg-web", 100, h1.IPv4))
	sw0.Uplinks = []string{h0.Uplink, h0.Spares[0]}
	a, c := NIC("vm-a", 0, "pg-web"), NIC("vm-c", 0, "pg-web")
	ConvergeClean(t, b0, netconf.Host{Switches: []netconf.Switch{sw0}, Ports: []netconf.Port{a}})
	ConvergeClean(t, nb(t, h1.NS), netconf.Host{
		Switches: []netconf.Switch{SwitchOn(h1, "sw1", VXLANGroup("pg-web", 100, h0.IPv4))}, Ports: []netconf.Port{c},
	})
	ta, tc := h0.OpenTap(t, a.Tap), h1.OpenTap(t, c.Tap)
	Deliver(t, 60, ta, []*Tap{tc}, nil)
	Deliver(t, 60, tc, []*Tap{ta}, nil)
	caps := b0.Caps(t.Context())
	if caps.Teaming != nil {
		t.Logf("%s backend: no teaming: %v", b0.Name(), caps.Teaming)
		if !errors.Is(caps.Teaming, netconf.ErrNotSupported) {
			t.Errorf("Caps.Teaming %q does not wrap netconf.ErrNotSupported", caps.Teaming)
		}
		return
	}
	h0.SetCable(t, h0.Uplink, false)
	Deliver(t, 60, ta, []*Tap{tc}, nil)
	Deliver(t, 60, tc, []*Tap{ta}, nil)
	h0.SetCable(t, h0.Uplink, true)
	h0.SetCable(t, h0.Spares[0], false)
	Deliver(t, 60, tc, []*Tap{ta}, nil)
	Deliver(t, 60, ta, []*Tap{tc}, nil)
}
