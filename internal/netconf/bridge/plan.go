package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/vdc-project/vdc/internal/netconf"
)

// plan is a Converge's desired state, checked against the host before
// anything changes.
type plan struct {
	portGroups []*pgPlan
	ports      []*portPlan
	// names holds every device the backend wants, with its kind as
	// netlink.Link.Type() says it: a device of ours that is not here, or
	// of another kind, is a leftover.
	names map[string]string
}

type switchPlan struct {
	sw  netconf.Switch
	err error // why the switch is not fully realized
	// tunnel is the device holding LocalIP (VXLAN's underlay); uplink
	// carries VLAN sub-interfaces. nil with tunnelErr / uplinkErr.
	tunnel, uplink       netlink.Link
	tunnelErr, uplinkErr error
}

type pgPlan struct {
	sw  *switchPlan
	pg  netconf.PortGroup
	mtu int
	// Device names; vxlan and vlan are "" when not wanted (or when they
	// cannot be made, with err saying why).
	bridge, vxlan, vlan string
	err                 error // why the port group is not (fully) realized
	// skip: not even the bridge is realized (a duplicate ID, a foreign
	// device with its name); its ports stay unattached.
	skip        bool
	bridgeIndex int // once realized
}

type portPlan struct {
	port netconf.Port
	pg   *pgPlan // nil: its port group is on no switch of this backend
	err  error   // a problem found before converging
	// noTap: the port gets no tap (its name is invalid or taken).
	noTap bool
}

// report records the port group's outcome in rep.
func (pg *pgPlan) report(rep *netconf.Report) {
	if pg.err == nil {
		return
	}
	sr := rep.Switches[pg.sw.sw.ID]
	sr.PortGroups[pg.pg.ID] = pg.err
	rep.Switches[pg.sw.sw.ID] = sr
}

func (pg *pgPlan) String() string { return netconf.PortGroupAlias(pg.sw.sw, pg.pg) }

func (b *Backend) plan(ctx context.Context, want netconf.Host, links linkSet, rep *netconf.Report) *plan {
	p := &plan{names: map[string]string{}}
	byID := map[string]*pgPlan{}
	for _, sw := range want.Switches {
		sp := b.planSwitch(sw, links)
		rep.Switches[sw.ID] = netconf.SwitchReport{Err: sp.err, PortGroups: map[string]error{}}
		for _, pg := range sw.PortGroups {
			pp := b.planPortGroup(ctx, sp, pg)
			if _, dup := byID[pg.ID]; dup {
				pp.err = fmt.Errorf("port group ID %q appears twice in the desired state: %w", pg.ID, netconf.ErrInvalid)
				pp.skip = true
			} else if pg.ID != "" {
				byID[pg.ID] = pp
			}
			p.portGroups = append(p.portGroups, pp)
			if pp.skip {
				continue
			}
			p.names[pp.bridge] = "bridge"
			if pp.vxlan != "" {
				p.names[pp.vxlan] = "vxlan"
			}
			if pp.vlan != "" {
				p.names[pp.vlan] = "vlan"
			}
		}
	}
	for _, port := range want.Ports {
		pp := &portPlan{port: port, pg: byID[port.PortGroup]}
		p.ports = append(p.ports, pp)
		switch err := netconf.ValidName(port.Tap); {
		case err != nil:
			pp.err, pp.noTap = fmt.Errorf("port %q: %w", netconf.PortAlias(port), err), true
			continue
		case p.names[port.Tap] != "":
			pp.err = fmt.Errorf("tap %s of %q: the name is already wanted for another device: %w", port.Tap, netconf.PortAlias(port), netconf.ErrInvalid)
			pp.noTap = true
			continue
		case port.MAC != nil && len(port.MAC) != 6:
			pp.err = fmt.Errorf("tap %s of %q: MAC %s is not an Ethernet address: %w", port.Tap, netconf.PortAlias(port), port.MAC, netconf.ErrInvalid)
		case pp.pg == nil:
			pp.err = fmt.Errorf("tap %s of %q: port group %q is on no bridge switch of this host: %w", port.Tap, netconf.PortAlias(port), port.PortGroup, netconf.ErrInvalid)
		}
		p.names[port.Tap] = "tuntap"
	}
	return p
}

// planSwitch finds the switch's underlay: the device holding LocalIP
// for VXLAN, the first uplink (else that same device) for VLANs.
func (b *Backend) planSwitch(sw netconf.Switch, links linkSet) *switchPlan {
	sp := &switchPlan{sw: sw}
	var needTunnel, needUplink bool
	for _, pg := range sw.PortGroups {
		needTunnel = needTunnel || pg.VNI > 0
		needUplink = needUplink || pg.VLAN > 0
	}
	if mtu := sw.EffectiveMTU(); mtu < 68 || mtu > 65535 {
		sp.err = fmt.Errorf("switch %s: MTU %d is outside 68..65535: %w", orID(sw.Name, sw.ID), mtu, netconf.ErrInvalid)
		return sp
	}
	if needTunnel || (needUplink && len(sw.Uplinks) == 0) {
		sp.tunnel, sp.tunnelErr = b.deviceWithAddr(sw)
	}
	if needUplink {
		if len(sw.Uplinks) > 0 {
			sp.uplink = links[sw.Uplinks[0]]
			if sp.uplink == nil {
				sp.uplinkErr = fmt.Errorf("switch %s: uplink %s does not exist on this host: %w", orID(sw.Name, sw.ID), sw.Uplinks[0], netconf.ErrInvalid)
			}
		} else {
			sp.uplink, sp.uplinkErr = sp.tunnel, sp.tunnelErr
		}
	}
	if needTunnel {
		sp.err = sp.tunnelErr
	}
	if sp.uplinkErr != nil && !errors.Is(sp.err, sp.uplinkErr) {
		sp.err = errors.Join(sp.err, sp.uplinkErr)
	}
	return sp
}

// deviceWithAddr is the device holding the switch's LocalIP.
func (b *Backend) deviceWithAddr(sw netconf.Switch) (netlink.Link, error) {
	name := orID(sw.Name, sw.ID)
	if !sw.LocalIP.IsValid() {
		return nil, fmt.Errorf("switch %s: no local tunnel IP: %w", name, netconf.ErrInvalid)
	}
	local := sw.LocalIP.Unmap()
	addrs, err := b.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("switch %s: list the host's addresses: %w", name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == local {
			l, err := b.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("switch %s: the device holding %s: %w", name, local, err)
			}
			return l, nil
		}
	}
	return nil, fmt.Errorf("switch %s: local tunnel IP %s is on no interface of this host: %w", name, local, netconf.ErrInvalid)
}

func (b *Backend) planPortGroup(ctx context.Context, sp *switchPlan, pg netconf.PortGroup) *pgPlan {
	pp := &pgPlan{sw: sp, pg: pg, mtu: sp.sw.EffectiveMTU(), bridge: netconf.BridgeName(pg.ID)}
	kinds := 0
	for _, set := range []bool{pg.VNI != 0, pg.VLAN != 0, pg.Isolated} {
		if set {
			kinds++
		}
	}
	switch {
	case pg.ID == "":
		pp.err, pp.skip = fmt.Errorf("port group %q has no ID: %w", pg.Name, netconf.ErrInvalid), true
	case sp.err != nil && sp.tunnelErr == nil && sp.uplinkErr == nil:
		pp.err, pp.skip = sp.err, true // the switch itself is invalid
	case kinds != 1:
		pp.err = fmt.Errorf("port group %s: exactly one of VNI, VLAN or isolated must be set: %w", pp, netconf.ErrInvalid)
	case pg.VNI != 0:
		pp.err = pp.planVXLAN()
	case pg.VLAN != 0:
		pp.err = pp.planVLAN(b.Caps(ctx).VLAN)
	}
	return pp
}

func (pp *pgPlan) planVXLAN() error {
	sp := pp.sw
	switch {
	case pp.pg.VNI < 1 || pp.pg.VNI > 1<<24-1:
		return fmt.Errorf("port group %s: VNI %d is outside 1..16777215: %w", pp, pp.pg.VNI, netconf.ErrInvalid)
	case sp.tunnelErr != nil:
		return fmt.Errorf("port group %s: no VXLAN tunnel: %w", pp, sp.tunnelErr)
	}
	overhead := netconf.VXLANOverhead(sp.sw.LocalIP)
	if need, have := pp.mtu+overhead, sp.tunnel.Attrs().MTU; have < need {
		return fmt.Errorf("port group %s: MTU %d over VXLAN needs an underlay MTU of at least %d (%d + %d bytes of VXLAN over %s), but %s, which holds %s, has MTU %d; raise its MTU or lower the switch's: %w",
			pp, pp.mtu, need, pp.mtu, overhead, ipVersion(sp.sw.LocalIP), sp.tunnel.Attrs().Name, sp.sw.LocalIP, have, netconf.ErrNotSupported)
	}
	pp.vxlan = netconf.VXLANName(pp.pg.ID)
	return nil
}

func (pp *pgPlan) planVLAN(caps error) error {
	sp := pp.sw
	switch {
	case pp.pg.VLAN < 1 || pp.pg.VLAN > 4094:
		return fmt.Errorf("port group %s: VLAN %d is outside 1..4094: %w", pp, pp.pg.VLAN, netconf.ErrInvalid)
	case caps != nil:
		return fmt.Errorf("port group %s: VLAN %d: %w", pp, pp.pg.VLAN, caps)
	case sp.uplinkErr != nil:
		return fmt.Errorf("port group %s: no uplink for VLAN %d: %w", pp, pp.pg.VLAN, sp.uplinkErr)
	}
	if have := sp.uplink.Attrs().MTU; have < pp.mtu {
		return fmt.Errorf("port group %s: MTU %d on VLAN %d needs an uplink MTU of at least %d, but uplink %s has MTU %d: %w",
			pp, pp.mtu, pp.pg.VLAN, pp.mtu, sp.uplink.Attrs().Name, have, netconf.ErrNotSupported)
	}
	pp.vlan = netconf.VLANName(pp.pg.ID)
	return nil
}

func ipVersion(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "IPv4"
	}
	return "IPv6"
}

func orID(name, id string) string {
	if name != "" {
		return name
	}
	return id
}
