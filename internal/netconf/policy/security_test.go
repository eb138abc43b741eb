package policy

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// Frames travel from one tap to another in the order they were sent, so a
// proper frame sent after a forbidden one proves, when it arrives, that
// the forbidden one was dropped rather than late.

func TestForgedTransmitsAreDropped(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	l.converge(a.port(Port{}), b.port(Port{}))

	a.sendTo(b.mac, "proper-1")
	b.receiveTag("proper-1")

	spoof := mustMAC("52:54:00:00:00:99")
	a.send(frame(b.mac, spoof, "forged-1", 64))
	a.send(frame(b.mac, b.mac, "posing-as-b", 64))
	a.send(frame(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, spoof, "forged-broadcast", 64))
	a.sendTo(b.mac, "proper-2")
	if seen := b.receiveTag("proper-2"); len(seen) != 0 {
		t.Fatalf("tapb received forged frames from tapa: %v", seen)
	}
	if n := l.dropped(FromChain("tapa")); n != 3 {
		t.Errorf("chain %s counted %d dropped frames, want 3", FromChain("tapa"), n)
	}
	// A dropped frame teaches the bridge nothing: tapb's MAC is not
	// now believed to be behind tapa.
	if port := l.fdbPort(spoof); port != "" {
		t.Errorf("bridge learned the forged MAC %s on %s", spoof, port)
	}
	if port := l.fdbPort(b.mac); port == "tapa" {
		t.Errorf("bridge learned tapb's MAC %s on tapa from a forged frame", b.mac)
	}

	l.converge(a.port(Port{Policy: netconf.Policy{AllowForgedTransmits: true}}), b.port(Port{}))
	a.send(frame(b.mac, spoof, "forged-allowed", 64))
	b.receiveTag("forged-allowed")
}

func TestUnicastToAnotherMACIsNotDelivered(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	l.converge(a.port(Port{}), b.port(Port{}))

	// An unknown destination: the bridge floods it to every port.
	other := mustMAC("52:54:00:00:00:77")
	a.sendTo(other, "to-other-1")
	a.sendTo(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "broadcast")
	a.sendTo(mustMAC("01:00:5e:00:00:fb"), "ipv4-multicast")
	a.sendTo(b.mac, "to-b")
	seen := b.receiveTag("to-b")
	if contains(seen, "to-other-1") {
		t.Errorf("tapb, without promiscuous mode or MAC changes, received unicast for %s", other)
	}
	if !contains(seen, "broadcast") || !contains(seen, "ipv4-multicast") {
		t.Errorf("tapb did not receive broadcast and multicast: saw %v", seen)
	}
	if n := l.dropped(ToChain("tapb")); n != 1 {
		t.Errorf("chain %s counted %d dropped frames, want 1", ToChain("tapb"), n)
	}

	for _, c := range []struct {
		name string
		pol  netconf.Policy
	}{
		{"promiscuous", netconf.Policy{AllowPromiscuous: true}},
		{"mac-changes", netconf.Policy{AllowMACChanges: true}},
	} {
		l.converge(a.port(Port{}), b.port(Port{Policy: c.pol}))
		a.sendTo(other, "to-other-"+c.name)
		b.receiveTag("to-other-" + c.name)
	}
}

// fdbPort is the bridge port on which br0 learned mac, "" if none.
func (l *lab) fdbPort(mac net.HardwareAddr) string {
	l.t.Helper()
	neighs, err := l.h.NeighList(0, unix.AF_BRIDGE)
	if err != nil {
		l.t.Fatalf("list br0's forwarding table: %v", err)
	}
	for _, n := range neighs {
		if n.HardwareAddr.String() == mac.String() && n.MasterIndex == l.br.Attrs().Index {
			if link, err := l.h.LinkByIndex(n.LinkIndex); err == nil {
				return link.Attrs().Name
			}
		}
	}
	return ""
}
