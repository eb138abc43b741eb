package dhcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VMPortPrefix starts the name of every bridge port that is a VM's tap;
// every other port (VXLAN "vx...", VLAN "vl...") leads off the host.
const VMPortPrefix = "vt"

const (
	etherIPv4  = 0x0800
	etherARP   = 0x0806
	protoUDP   = 17
	portServer = 67
	portClient = 68
	// Offsets in the IPv4 and ARP headers.
	ipSaddr  = 12
	ipDaddr  = 16
	arpSaddr = 14 // sender protocol address (Ethernet/IPv4 ARP)
	arpDaddr = 24 // target protocol address
	// Offsets in the UDP header.
	udpSport = 0
	udpDport = 2
)

// The arp family's hooks (NF_ARP_IN, NF_ARP_OUT) are numbered apart
// from the inet ones that nftables.ChainHookInput and Output are.
var (
	arpHookIn  = nftables.ChainHookRef(0)
	arpHookOut = nftables.ChainHookRef(1)
)

// guarded is a service as the rules see it: its bridge, its address and
// the ports of its bridge that lead off the host.
type guarded struct {
	s       Service
	offHost []string
}

// applyRules replaces the tables vdc-dhcp (families bridge, inet and
// arp) with the rules of services in one batch: the kernel applies it
// whole or not at all. With no service the tables are removed.
func applyRules(ns netns.NsHandle, services []guarded) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	fams := []nftables.TableFamily{nftables.TableFamilyBridge, nftables.TableFamilyINet, nftables.TableFamilyARP}
	tables := make([]*nftables.Table, len(fams))
	for i, f := range fams {
		tables[i] = &nftables.Table{Name: TableName, Family: f}
		// Adding before deleting makes the delete succeed when there is
		// no table yet, so the batch needs no look first.
		c.AddTable(tables[i])
		c.DelTable(tables[i])
	}
	if len(services) > 0 {
		for _, t := range tables {
			c.AddTable(t)
		}
		if err := addIsolation(c, tables[0], services); err != nil {
			return err
		}
		if err := addHostGuard(c, tables[1], tables[2], services); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables tables %s (bridge, inet, arp; %d services): %w", TableName, len(services), err)
	}
	return nil
}

// addIsolation keeps each host's server to itself (table bridge
// vdc-dhcp): a frame that enters the bridge from a port off the host
// (prerouting, before it is forwarded or delivered to the host) or
// leaves through one (postrouting, after it was forwarded or sent by
// the host) is dropped when it is DHCP, ARP from or for ServerIP, or
// IPv4 from or to ServerIP. The dispatch is by port name, as this
// kernel family cannot match a port's bridge by name everywhere.
func addIsolation(c *nftables.Conn, t *nftables.Table, services []guarded) error {
	targets := map[string]string{}
	for _, g := range services {
		mac := ServerMAC(g.s.PortGroup)
		rules := [][]expr.Any{
			// Every frame of the server (DHCP answers, ARP, router
			// advertisements, neighbour discovery) or to it.
			join(etherAddr(6, mac), drop()),
			join(etherAddr(0, mac), drop()),
		}
		if g.s.Subnet.IsValid() {
			rules = append(rules,
				join(bridgeUDP(udpDport, portServer), drop()),
				join(bridgeUDP(udpDport, portClient), drop()),
				join(bridgeARP(arpSaddr, g.s.ServerIP), drop()),
				join(bridgeARP(arpDaddr, g.s.ServerIP), drop()),
				join(bridgeIP(ipSaddr, g.s.ServerIP), drop()),
				join(bridgeIP(ipDaddr, g.s.ServerIP), drop()))
		}
		ch := addChain(c, t, "iso-"+g.s.Bridge, g.s, rules)
		for _, p := range g.offHost {
			targets[p] = ch.Name
		}
	}
	if err := addBase(c, t, "prerouting", nftables.ChainHookPrerouting, expr.MetaKeyIIFNAME, "offhost_in", targets); err != nil {
		return err
	}
	return addBase(c, t, "postrouting", nftables.ChainHookPostrouting, expr.MetaKeyOIFNAME, "offhost_out", targets)
}

// addHostGuard makes the host offer its VMs nothing but DHCP on a
// service's bridge (tables inet and arp vdc-dhcp, keyed on the bridge,
// which is the device the host sees the frames on): it takes in only
// DHCP requests and ARP for ServerIP, sends only DHCP answers and ARP
// from ServerIP, and routes nothing to or from the bridge.
func addHostGuard(c *nftables.Conn, inet, arp *nftables.Table, services []guarded) error {
	in, out := map[string]string{}, map[string]string{}
	fwdIn, fwdOut := map[string]string{}, map[string]string{}
	arpIn, arpOut := map[string]string{}, map[string]string{}
	for _, g := range services {
		s, br := g.s, g.s.Bridge
		var inRules, outRules [][]expr.Any
		if s.Subnet.IsValid() {
			inRules = append(inRules, join(inetUDP(udpDport, portServer), accept()))
			outRules = append(outRules, join(inetIP(ipSaddr, s.ServerIP), udp(udpSport, portServer), accept()))
		}
		if s.Prefix6.IsValid() {
			for _, typ := range []byte{icmp6RouterSolicit, icmp6NeighborSolicit, icmp6NeighborAdvert} {
				inRules = append(inRules, join(icmp6(typ), accept()))
			}
			for _, typ := range []byte{icmp6RouterAdvert, icmp6NeighborSolicit, icmp6NeighborAdvert} {
				outRules = append(outRules, join(icmp6(typ), accept()))
			}
		}
		in[br] = addChain(c, inet, "in-"+br, s, append(inRules, drop())).Name
		out[br] = addChain(c, inet, "out-"+br, s, append(outRules, drop())).Name
		// With br_netfilter, frames bridged between two ports of the
		// bridge pass this hook too, as from the bridge to itself.
		fwdIn[br] = addChain(c, inet, "fwd-in-"+br, s, [][]expr.Any{
			join(ifnameIs(expr.MetaKeyOIFNAME, br), accept()),
			drop(),
		}).Name
		fwdOut[br] = addChain(c, inet, "fwd-out-"+br, s, [][]expr.Any{
			join(ifnameIs(expr.MetaKeyIIFNAME, br), accept()),
			drop(),
		}).Name
		var arpInRules, arpOutRules [][]expr.Any
		if s.Subnet.IsValid() {
			arpInRules = append(arpInRules, join(arpAddr(arpDaddr, s.ServerIP), accept()))
			arpOutRules = append(arpOutRules, join(arpAddr(arpSaddr, s.ServerIP), accept()))
		}
		arpIn[br] = addChain(c, arp, "in-"+br, s, append(arpInRules, drop())).Name
		arpOut[br] = addChain(c, arp, "out-"+br, s, append(arpOutRules, drop())).Name
	}
	for _, b := range []struct {
		t       *nftables.Table
		base    string
		hook    *nftables.ChainHook
		key     expr.MetaKey
		vmap    string
		targets map[string]string
	}{
		{inet, "input", nftables.ChainHookInput, expr.MetaKeyIIFNAME, "from_vms", in},
		{inet, "output", nftables.ChainHookOutput, expr.MetaKeyOIFNAME, "to_vms", out},
		{inet, "forward-in", nftables.ChainHookForward, expr.MetaKeyIIFNAME, "routed_from_vms", fwdIn},
		{inet, "forward-out", nftables.ChainHookForward, expr.MetaKeyOIFNAME, "routed_to_vms", fwdOut},
		{arp, "input", arpHookIn, expr.MetaKeyIIFNAME, "from_vms", arpIn},
		{arp, "output", arpHookOut, expr.MetaKeyOIFNAME, "to_vms", arpOut},
	} {
		if err := addBase(c, b.t, b.base, b.hook, b.key, b.vmap, b.targets); err != nil {
			return err
		}
	}
	return nil
}

// addChain adds a regular chain of a service holding rules.
func addChain(c *nftables.Conn, t *nftables.Table, name string, s Service, rules [][]expr.Any) *nftables.Chain {
	ch := c.AddChain(&nftables.Chain{Name: name, Table: t})
	comment := userdata.AppendString(nil, userdata.TypeComment, "vdc DHCP of port group "+s.PortGroup)
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r, UserData: comment})
	}
	return ch
}

// addBase adds a base chain at hook (filter priority, policy accept)
// whose one rule jumps, through the verdict map vmap keyed on the
// device (key: iifname or oifname), to targets[device].
func addBase(c *nftables.Conn, t *nftables.Table, base string, hook *nftables.ChainHook, key expr.MetaKey,
	vmap string, targets map[string]string) error {
	accept := nftables.ChainPolicyAccept
	prio := nftables.ChainPriorityFilter
	if t.Family == nftables.TableFamilyBridge {
		prio = nftables.ChainPriorityRef(-200) // NF_BR_PRI_FILTER_BRIDGED
	}
	b := c.AddChain(&nftables.Chain{
		Name: base, Table: t, Type: nftables.ChainTypeFilter, Hooknum: hook, Priority: prio, Policy: &accept,
	})
	devs := make([]string, 0, len(targets))
	for d := range targets {
		devs = append(devs, d)
	}
	slices.Sort(devs)
	var elems []nftables.SetElement
	for _, d := range devs {
		elems = append(elems, nftables.SetElement{
			Key:         ifname(d),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: targets[d]},
		})
	}
	m := &nftables.Set{Table: t, Name: vmap, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	if err := c.AddSet(m, elems); err != nil {
		return fmt.Errorf("build nftables map %s: %w", vmap, err)
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: b, Exprs: []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, DestRegister: 0, IsDestRegSet: true},
	}})
	return nil
}

func join(parts ...[]expr.Any) []expr.Any {
	var e []expr.Any
	for _, p := range parts {
		e = append(e, p...)
	}
	return e
}

func drop() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

func cmpEq(data []byte) *expr.Cmp { return &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data} }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func load(base expr.PayloadBase, offset, n uint32) *expr.Payload {
	return &expr.Payload{DestRegister: 1, Base: base, Offset: offset, Len: n}
}

// etherType: the frame carries t (bridge family).
func etherType(t uint16) []expr.Any {
	return []expr.Any{load(expr.PayloadBaseLLHeader, 12, 2), cmpEq(be16(t))}
}

// addrAt: the 4 bytes at offset of the network header are a.
func addrAt(offset uint32, a netip.Addr) []expr.Any {
	return []expr.Any{load(expr.PayloadBaseNetworkHeader, offset, 4), cmpEq(a.AsSlice())}
}

// udp: the IPv4 packet is UDP with port at offset (source or
// destination). A non-first fragment has no transport header and does
// not match.
func udp(offset uint32, port uint16) []expr.Any {
	return []expr.Any{
		load(expr.PayloadBaseNetworkHeader, 9, 1), cmpEq([]byte{protoUDP}),
		load(expr.PayloadBaseTransportHeader, offset, 2), cmpEq(be16(port)),
	}
}

func bridgeIP(offset uint32, a netip.Addr) []expr.Any {
	return join(etherType(etherIPv4), addrAt(offset, a))
}
func bridgeARP(offset uint32, a netip.Addr) []expr.Any {
	return join(etherType(etherARP), addrAt(offset, a))
}
func bridgeUDP(offset uint32, port uint16) []expr.Any {
	return join(etherType(etherIPv4), udp(offset, port))
}

// etherAddr: the frame's destination (offset 0) or source (6) MAC is mac
// (bridge family).
func etherAddr(offset uint32, mac []byte) []expr.Any {
	return []expr.Any{load(expr.PayloadBaseLLHeader, offset, 6), cmpEq(mac)}
}

// ICMPv6 types of router and neighbour discovery (RFC 4861).
const (
	icmp6RouterSolicit   = 133
	icmp6RouterAdvert    = 134
	icmp6NeighborSolicit = 135
	icmp6NeighborAdvert  = 136
)

// icmp6: the packet is ICMPv6 of type typ (inet family).
func icmp6(typ byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmpEq([]byte{unix.NFPROTO_IPV6}),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, cmpEq([]byte{unix.IPPROTO_ICMPV6}),
		load(expr.PayloadBaseTransportHeader, 0, 1), cmpEq([]byte{typ}),
	}
}

// ipv4: the packet is IPv4 (inet family).
func ipv4() []expr.Any {
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1}, cmpEq([]byte{unix.NFPROTO_IPV4})}
}

func inetIP(offset uint32, a netip.Addr) []expr.Any { return join(ipv4(), addrAt(offset, a)) }
func inetUDP(offset uint32, port uint16) []expr.Any { return join(ipv4(), udp(offset, port)) }

// arpAddr: the ARP packet's sender or target address is a (arp family).
func arpAddr(offset uint32, a netip.Addr) []expr.Any { return addrAt(offset, a) }

// ifnameIs: iifname or oifname (key) is name.
func ifnameIs(key expr.MetaKey, name string) []expr.Any {
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, cmpEq(ifname(name))}
}

// ifname is a device name as nftables compares it: IFNAMSIZ bytes, zero
// padded.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}
