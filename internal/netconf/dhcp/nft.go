package dhcp

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
)

// VMPortPrefix starts the name of every bridge port that is a VM's tap;
// every other port (VXLAN "vx...", VLAN "vl...") leads off the host.
const VMPortPrefix = "vt"

const (
	// bridgeFilter is the bridge family's filter priority.
	bridgeFilter = -200
	etherIPv4    = 0x0800
	etherARP     = 0x0806
	protoUDP     = 17
	portServer   = 67
	portClient   = 68
)

// A chain per service and hook, reached through a verdict map keyed
// on the bridge's name.
var hooks = []struct {
	base  string
	hook  *nftables.ChainHook
	vmap  string
	chain func(bridge string) string
	rules func(s netip.Addr) [][]expr.Any
}{
	{"forward", nftables.ChainHookForward, "fwd_dhcp", func(b string) string { return "fwd-" + b }, forwardRules},
	{"input", nftables.ChainHookInput, "in_dhcp", func(b string) string { return "in-" + b }, inputRules},
	{"output", nftables.ChainHookOutput, "out_dhcp", func(b string) string { return "out-" + b }, outputRules},
}

// applyRules replaces the table vdc-dhcp with the rules of services in
// one batch (the kernel applies it whole or not at all); with no
// service the table is removed.
func applyRules(ns netns.NsHandle, services []Service) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
	// Adding before deleting makes the delete succeed when there is no
	// table yet, so the batch needs no look first.
	c.AddTable(t)
	c.DelTable(t)
	if len(services) > 0 {
		c.AddTable(t)
		for _, hk := range hooks {
			if err := addHook(c, t, hk.base, hk.hook, hk.vmap, services, hk.chain, hk.rules); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table bridge %s (%d services): %w", TableName, len(services), err)
	}
	return nil
}

// addHook adds a base chain at hook with policy accept, a chain per
// service holding rules(ServerIP), and the dispatch from the one to the
// others by bridge name (map vmap). On the forward hook a frame is
// dispatched only when it enters or leaves through a port that is not a
// VM's: traffic between two VMs of this host is none of this table's
// business.
func addHook(c *nftables.Conn, t *nftables.Table, base string, hook *nftables.ChainHook, vmap string,
	services []Service, chain func(string) string, rules func(netip.Addr) [][]expr.Any) error {
	accept := nftables.ChainPolicyAccept
	b := c.AddChain(&nftables.Chain{
		Name: base, Table: t, Type: nftables.ChainTypeFilter, Hooknum: hook,
		Priority: nftables.ChainPriorityRef(bridgeFilter), Policy: &accept,
	})
	var elems []nftables.SetElement
	for _, s := range services {
		ch := c.AddChain(&nftables.Chain{Name: chain(s.Bridge), Table: t})
		for _, r := range rules(s.ServerIP) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r,
				UserData: userdata.AppendString(nil, userdata.TypeComment, "vdc DHCP of port group "+s.PortGroup)})
		}
		elems = append(elems, nftables.SetElement{
			Key:         ifname(s.Bridge),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name},
		})
	}
	m := &nftables.Set{Table: t, Name: vmap, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	if err := c.AddSet(m, elems); err != nil {
		return fmt.Errorf("build nftables map %s: %w", vmap, err)
	}
	dispatch := func(port, bridge expr.MetaKey, notVM bool) {
		var e []expr.Any
		if notVM {
			e = append(e, notVMPort(port)...)
		}
		e = append(e, &expr.Meta{Key: bridge, Register: 1},
			&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, DestRegister: 0, IsDestRegSet: true})
		c.AddRule(&nftables.Rule{Table: t, Chain: b, Exprs: e})
	}
	switch hook {
	case nftables.ChainHookForward:
		dispatch(expr.MetaKeyIIFNAME, expr.MetaKeyBRIIIFNAME, true)
		dispatch(expr.MetaKeyOIFNAME, expr.MetaKeyBRIOIFNAME, true)
	case nftables.ChainHookInput:
		dispatch(expr.MetaKeyIIFNAME, expr.MetaKeyBRIIIFNAME, false)
	default:
		dispatch(expr.MetaKeyOIFNAME, expr.MetaKeyBRIOIFNAME, false)
	}
	return nil
}

// forwardRules are for frames between a VM and a port off the host (a
// tunnel): no DHCP and nothing to or from the server's address crosses
// it, so no host hears another host's VMs or server.
func forwardRules(s netip.Addr) [][]expr.Any {
	return [][]expr.Any{
		join(udpPort(2, portServer), drop()), // udp dport 67
		join(udpPort(2, portClient), drop()), // udp dport 68
		join(arpAddr(14, s), drop()),         // arp saddr ip S
		join(arpAddr(24, s), drop()),         // arp daddr ip S
		join(ipAddr(12, s), drop()),          // ip saddr S
		join(ipAddr(16, s), drop()),          // ip daddr S
	}
}

// inputRules are for frames the bridge delivers to the host: it takes
// nothing from off the host, and from its VMs only ARP for the server
// and DHCP requests.
func inputRules(s netip.Addr) [][]expr.Any {
	return [][]expr.Any{
		join(notVMPort(expr.MetaKeyIIFNAME), drop()),
		join(arpAddr(24, s), accept()),
		join(udpPort(2, portServer), accept()),
		drop(),
	}
}

// outputRules are for frames the host sends on the bridge: nothing off
// the host, and to its VMs only ARP and DHCP answers from the server.
func outputRules(s netip.Addr) [][]expr.Any {
	return [][]expr.Any{
		join(notVMPort(expr.MetaKeyOIFNAME), drop()),
		join(arpAddr(14, s), accept()),
		join(ipAddr(12, s), udpPort(0, portServer), accept()),
		drop(),
	}
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

// notVMPort: iifname (or oifname) != "vt*", a compare of the name's
// first bytes only.
func notVMPort(key expr.MetaKey) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(VMPortPrefix)},
	}
}

func etherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, t)},
	}
}

// ipAddr: ip saddr (offset 12) or daddr (16) == a.
func ipAddr(offset uint32, a netip.Addr) []expr.Any {
	return append(etherType(etherIPv4),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()})
}

// arpAddr: the ARP sender (offset 14) or target (24) protocol address
// == a.
func arpAddr(offset uint32, a netip.Addr) []expr.Any {
	return append(etherType(etherARP),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()})
}

// udpPort: IPv4 UDP with source (offset 0) or destination (2) port.
// A non-first fragment has no transport header and does not match.
func udpPort(offset uint32, port uint16) []expr.Any {
	return append(etherType(etherIPv4),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 9, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protoUDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)})
}

// ifname is a device name as nftables compares it: IFNAMSIZ bytes, zero
// padded.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}
