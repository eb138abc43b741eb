package policy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// TestIPv6NeighborDiscoveryPasses runs the NDP exchanges a guest needs
// (address resolution through solicited-node multicast, a unicast answer,
// a router advertisement to all nodes) between two ports with the
// strictest policy.
func TestIPv6NeighborDiscoveryPasses(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	l.converge(a.port(Port{}), b.port(Port{}))

	aLL, bAddr := netip.MustParseAddr("fe80::5054:ff:fe00:a"), netip.MustParseAddr("2001:db8:1::b")
	solicited := netip.MustParseAddr("ff02::1:ff00:b")
	solicitedMAC := mustMAC("33:33:ff:00:00:0b")

	// a resolves b's address: a neighbour solicitation to b's
	// solicited-node group, carrying a's MAC.
	ns := append(make([]byte, 4), bAddr.AsSlice()...)
	ns = append(ns, 1, 1) // source link-layer address option
	ns = append(ns, a.mac...)
	a.send(icmp6Frame(t, solicitedMAC, a.mac, aLL, solicited, ipv6.ICMPTypeNeighborSolicitation, ns))
	b.receiveUntil(isICMP6(ipv6.ICMPTypeNeighborSolicitation, bAddr))

	// b answers to a's MAC.
	na := binary.BigEndian.AppendUint32(nil, 0x60000000) // solicited, override
	na = append(na, bAddr.AsSlice()...)
	na = append(na, 2, 1) // target link-layer address option
	na = append(na, b.mac...)
	b.send(icmp6Frame(t, a.mac, b.mac, bAddr, aLL, ipv6.ICMPTypeNeighborAdvertisement, na))
	a.receiveUntil(isICMP6(ipv6.ICMPTypeNeighborAdvertisement, bAddr))

	// a, as a router, advertises a prefix to all nodes (what SLAAC needs).
	ra := []byte{64, 0, 0x07, 0x08, 0, 0, 0, 0, 0, 0, 0, 0}
	ra = append(ra, 1, 1)
	ra = append(ra, a.mac...)
	ra = append(ra, 3, 4, 64, 0xc0)
	ra = binary.BigEndian.AppendUint32(ra, 86400)
	ra = binary.BigEndian.AppendUint32(ra, 14400)
	ra = append(ra, 0, 0, 0, 0)
	ra = append(ra, netip.MustParseAddr("2001:db8:1::").AsSlice()...)
	allNodes := netip.MustParseAddr("ff02::1")
	a.send(icmp6Frame(t, mustMAC("33:33:00:00:00:01"), a.mac, aLL, allNodes, ipv6.ICMPTypeRouterAdvertisement, ra))
	b.receiveUntil(isICMP6(ipv6.ICMPTypeRouterAdvertisement, aLL))
}

// icmp6Frame is an Ethernet frame with an IPv6 packet (hop limit 255, as
// NDP requires) holding an ICMPv6 message of type typ with body.
func icmp6Frame(t *testing.T, dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, typ ipv6.ICMPType, body []byte) []byte {
	t.Helper()
	m := icmp.Message{Type: typ, Body: &icmp.RawBody{Data: body}}
	payload, err := m.Marshal(icmp.IPv6PseudoHeader(src.AsSlice(), dst.AsSlice()))
	if err != nil {
		t.Fatal(err)
	}
	b := append(append([]byte{}, dstMAC...), srcMAC...)
	b = binary.BigEndian.AppendUint16(b, 0x86dd)
	b = append(b, 0x60, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	b = append(b, 58, 255)
	b = append(b, src.AsSlice()...)
	b = append(b, dst.AsSlice()...)
	return append(b, payload...)
}

// isICMP6 matches an ICMPv6 message of type typ about addr: the target of
// a solicitation or advertisement, the source of a router advertisement.
func isICMP6(typ ipv6.ICMPType, addr netip.Addr) func([]byte) bool {
	return func(b []byte) bool {
		if len(b) < 14+40+8 || binary.BigEndian.Uint16(b[12:14]) != 0x86dd || b[14+6] != 58 || b[54] != byte(typ) {
			return false
		}
		if typ == ipv6.ICMPTypeRouterAdvertisement {
			src, _ := netip.AddrFromSlice(b[14+8 : 14+24])
			return src == addr
		}
		if len(b) < 54+8+16 {
			return false
		}
		target, _ := netip.AddrFromSlice(b[54+8 : 54+24])
		return target == addr
	}
}
