package policy

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
)

// TableName is the nftables table (family bridge) vdc owns.
const TableName = "vdc"

const (
	fromMap = "from_vm" // iifname -> jump from-TAP
	toMap   = "to_vm"   // oifname -> jump to-TAP
	// bridgeFilter is the bridge family's filter priority (NF_BR_PRI_FILTER_BRIDGED).
	bridgeFilter = -200
)

// FromChain and ToChain name the chains that hold one port's rules for the
// frames its VM sends and receives.
func FromChain(tap string) string { return "from-" + tap }

// ToChain: see FromChain.
func ToChain(tap string) string { return "to-" + tap }

// guardsFrom and guardsTo say which filters a port needs.
func guardsFrom(p Port) bool { return !p.Policy.AllowForgedTransmits }
func guardsTo(p Port) bool   { return !p.Policy.AllowMACChanges && !p.Policy.AllowPromiscuous }

// applyRules replaces the table vdc with the rules of ports in one batch:
// the kernel applies it whole or not at all. With nothing to enforce the
// table is removed.
func applyRules(ns netns.NsHandle, ports []Port) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
	// Adding before deleting makes the delete succeed when there is no
	// table yet, so the batch needs no look first.
	c.AddTable(t)
	c.DelTable(t)
	var from, to []Port
	for _, p := range ports {
		if guardsFrom(p) {
			from = append(from, p)
		}
		if guardsTo(p) {
			to = append(to, p)
		}
	}
	if len(from)+len(to) > 0 {
		c.AddTable(t)
		if err := addDispatch(c, t, "prerouting", nftables.ChainHookPrerouting, expr.MetaKeyIIFNAME, fromMap, from, FromChain, fromRule); err != nil {
			return err
		}
		if err := addDispatch(c, t, "postrouting", nftables.ChainHookPostrouting, expr.MetaKeyOIFNAME, toMap, to, ToChain, toRule); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("replace nftables table bridge %s (%d ports): %w", TableName, len(ports), err)
	}
	return nil
}

// addDispatch adds a base chain at hook whose one rule jumps, through the
// verdict map mapName keyed on the device (key), to the chain of each port
// in ports, made with chain and holding rule.
func addDispatch(c *nftables.Conn, t *nftables.Table, base string, hook *nftables.ChainHook, key expr.MetaKey,
	mapName string, ports []Port, chain func(string) string, rule func(Port) []expr.Any) error {
	if len(ports) == 0 {
		return nil
	}
	accept := nftables.ChainPolicyAccept
	b := c.AddChain(&nftables.Chain{
		Name: base, Table: t, Type: nftables.ChainTypeFilter, Hooknum: hook,
		Priority: nftables.ChainPriorityRef(bridgeFilter), Policy: &accept,
	})
	var elems []nftables.SetElement
	for _, p := range ports {
		ch := c.AddChain(&nftables.Chain{Name: chain(p.Tap), Table: t})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: rule(p),
			UserData: userdata.AppendString(nil, userdata.TypeComment, "vdc port "+p.Tap+" "+p.MAC.String())})
		elems = append(elems, nftables.SetElement{
			Key:         ifname(p.Tap),
			VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name},
		})
	}
	m := &nftables.Set{Table: t, Name: mapName, IsMap: true, KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
	if err := c.AddSet(m, elems); err != nil {
		return fmt.Errorf("build nftables map %s: %w", mapName, err)
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: b, Exprs: []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: m.Name, SetID: m.ID, DestRegister: 0, IsDestRegSet: true},
	}})
	return nil
}

// fromRule: ether saddr != MAC counter drop.
func fromRule(p Port) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(p.MAC)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// toRule: ether daddr & 01:00:00:00:00:00 == 0 (unicast), ether daddr !=
// MAC, counter drop.
func toRule(p Port) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{1}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte(p.MAC)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// ifname is a device name as nftables compares it: IFNAMSIZ bytes, zero
// padded.
func ifname(name string) []byte {
	b := make([]byte, 16)
	copy(b, name)
	return b
}
