package netconftest

import (
	"context"
	"crypto/sha256"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/vdc-project/vdc/internal/netconf"
)

// NewBackend returns a fresh backend instance managing namespace ns (a
// restarted agent is a second call for the same ns). It closes what it
// opens with t.Cleanup.
type NewBackend func(t *testing.T, ns netns.NsHandle) netconf.Backend

// Run runs the conformance suite against a backend. Every case builds
// its own lab of namespaces, so it needs root; it skips without (fails
// under VDC_REQUIRE_E2E=1).
func Run(t *testing.T, nb NewBackend) {
	cases := []struct {
		name string
		fn   func(*testing.T, NewBackend)
	}{
		{"IsolatedPortGroup", testIsolated},
		{"VXLANAcrossHostsIPv4", func(t *testing.T, nb NewBackend) { testVXLAN(t, nb, false) }},
		{"VXLANAcrossHostsIPv6", func(t *testing.T, nb NewBackend) { testVXLAN(t, nb, true) }},
		{"ConvergeIsIdempotent", testIdempotent},
		{"RestartedBackendChangesNothing", testRestart},
		{"LeftoversRemovedForeignDevicesKept", testLeftovers},
		{"FloodListFollowsPeers", testPeers},
		{"FullMeshOfThreeHostsDoesNotLoop", testFullMesh},
		{"PortMovesKeepingItsTap", testPortMove},
		{"PortDown", testPortDown},
		{"VLANPortGroups", testVLAN},
		{"MTU", testMTU},
		{"UnderlayTooSmallForMTU", testMTUTooBig},
		{"ForeignDeviceWithAWantedName", testForeign},
		{"BadDesiredState", testBadWant},
		{"TeamedUplinks", testTeaming},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, nb) })
	}
}

// Helpers to write desired states.

// VXLANGroup is a VXLAN port group.
func VXLANGroup(id string, vni int, peers ...netip.Addr) netconf.PortGroup {
	return netconf.PortGroup{ID: id, Name: id, VNI: vni, Peers: peers}
}

// IsolatedGroup is an isolated port group.
func IsolatedGroup(id string) netconf.PortGroup {
	return netconf.PortGroup{ID: id, Name: id, Isolated: true}
}

// VLANGroup is a VLAN port group.
func VLANGroup(id string, vlan int) netconf.PortGroup {
	return netconf.PortGroup{ID: id, Name: id, VLAN: vlan}
}

// SwitchOn is a switch as host h realizes it, tunnelling from its IPv4.
func SwitchOn(h *Host, id string, pgs ...netconf.PortGroup) netconf.Switch {
	return netconf.Switch{ID: id, Name: id, LocalIP: h.IPv4, PortGroups: pgs}
}

// NIC is VM vm's NIC nic on port group pg, named as the agent names it.
// Frames the suite writes into its tap come from its MAC, as a guest's
// do (see Tap.MAC).
func NIC(vm string, nic int, pg string) netconf.Port {
	sum := sha256.Sum256([]byte(vm))
	p := netconf.Port{
		Tap:       netconf.TapName(vm, nic),
		Alias:     netconf.NICAlias(vm, nic),
		MAC:       net.HardwareAddr{0x52, 0x54, 0, sum[0], sum[1], byte(nic)},
		PortGroup: pg,
	}
	nicMACs.Store(p.Tap, p.MAC)
	return p
}

// nicMACs holds the MAC of every tap NIC has named.
var nicMACs sync.Map // tap name -> net.HardwareAddr

func nicMAC(tap string) net.HardwareAddr {
	if mac, ok := nicMACs.Load(tap); ok {
		return mac.(net.HardwareAddr)
	}
	return nil
}

// Converge converges want on b and fails the test on an error.
func Converge(t testing.TB, b netconf.Backend, want netconf.Host) netconf.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := b.Converge(ctx, want)
	if err != nil {
		t.Fatalf("converge: %v", err)
	}
	return rep
}

// ConvergeClean converges want and fails the test unless everything in
// it was realized.
func ConvergeClean(t testing.TB, b netconf.Backend, want netconf.Host) netconf.Report {
	t.Helper()
	rep := Converge(t, b, want)
	RequireClean(t, rep, want)
	return rep
}

// RequireClean fails the test unless rep reports every switch, port
// group and port of want realized.
func RequireClean(t testing.TB, rep netconf.Report, want netconf.Host) {
	t.Helper()
	for _, sw := range want.Switches {
		sr, ok := rep.Switches[sw.ID]
		if !ok {
			t.Errorf("report has no switch %s", sw.ID)
			continue
		}
		if sr.Err != nil {
			t.Errorf("switch %s: %v", sw.ID, sr.Err)
		}
		for id, err := range sr.PortGroups {
			if err != nil {
				t.Errorf("switch %s port group %s: %v", sw.ID, id, err)
			}
		}
	}
	for _, p := range want.Ports {
		err, ok := rep.Ports[p.Tap]
		if !ok {
			t.Errorf("report has no port %s", p.Tap)
		} else if err != nil {
			t.Errorf("port %s: %v", p.Tap, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// PortGroupErr is the error rep holds for a port group.
func PortGroupErr(rep netconf.Report, sw, pg string) error {
	return rep.Switches[sw].PortGroups[pg]
}

// VDCDevices are the host's devices that vdc made (their alias says so),
// by name.
func (h *Host) VDCDevices(t testing.TB) map[string]Link {
	t.Helper()
	out := map[string]Link{}
	for name, l := range h.Links(t) {
		if _, _, ok := netconf.AliasOwner(l.Alias); ok {
			out[name] = l
		}
	}
	return out
}

// Taps opens the taps of ports on h.
func (h *Host) Taps(t testing.TB, ports ...netconf.Port) []*Tap {
	t.Helper()
	var out []*Tap
	for _, p := range ports {
		out = append(out, h.OpenTap(t, p.Tap))
	}
	return out
}

// requireTap checks that port's tap exists on h as a vdc-made tap of
// backend, up (or down) at mtu.
func requireTap(t testing.TB, h *Host, backend string, port netconf.Port, up bool, mtu int) Link {
	t.Helper()
	l, ok := h.Links(t)[port.Tap]
	if !ok {
		t.Fatalf("%s has no tap %s for %s", h.Name, port.Tap, port.Alias)
	}
	owner, what, vdc := netconf.AliasOwner(l.Alias)
	switch {
	case l.Kind != "tuntap":
		t.Errorf("%s/%s is a %s, want a tap", h.Name, port.Tap, l.Kind)
	case !vdc || owner != backend || what != netconf.PortAlias(port):
		t.Errorf("%s/%s has alias %q, want %q", h.Name, port.Tap, l.Alias, netconf.Alias(backend, netconf.PortAlias(port)))
	case l.Up != up:
		t.Errorf("%s/%s up=%v, want %v", h.Name, port.Tap, l.Up, up)
	case l.MTU != mtu:
		t.Errorf("%s/%s has MTU %d, want %d", h.Name, port.Tap, l.MTU, mtu)
	}
	return l
}
