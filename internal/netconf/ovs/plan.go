package ovs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/vdc-project/vdc/internal/netconf"
)

// snap is the host as a Converge found it: the database and the kernel's
// devices and addresses, kept current as the Converge changes them.
type snap struct {
	db    *ovsState
	links map[string]netlink.Link
	addrs []netlink.Addr
}

func (b *Backend) snapshot(ctx context.Context) (*snap, error) {
	db, err := b.c.readState(ctx)
	if err != nil {
		return nil, err
	}
	cv := &snap{db: db}
	if err := b.readLinks(cv); err != nil {
		return nil, err
	}
	return cv, nil
}

func (b *Backend) readLinks(cv *snap) error {
	all, err := b.h.LinkList()
	if err != nil {
		return fmt.Errorf("list the host's network devices: %w", err)
	}
	cv.links = map[string]netlink.Link{}
	for _, l := range all {
		cv.links[l.Attrs().Name] = l
	}
	if cv.addrs, err = b.h.AddrList(nil, netlink.FAMILY_ALL); err != nil {
		return fmt.Errorf("list the host's addresses: %w", err)
	}
	return nil
}

func (b *Backend) rereadDB(ctx context.Context, cv *snap) error {
	db, err := b.c.readState(ctx)
	if err != nil {
		return err
	}
	cv.db = db
	return nil
}

// plan is a Converge's desired state, checked against the host before
// anything changes.
type plan struct {
	uplinks    []*uplinkPlan
	portGroups []*pgPlan
	ports      []*portPlan
	bridges    map[string]bool   // OVS bridges wanted
	ovsPorts   map[string]string // OVS ports wanted (besides bridges' own), to their bridge
	taps       map[string]bool   // kernel taps wanted
}

// uplinkPlan is an uplink bridge: host interfaces in an OVS bridge, as
// the trunk of VLAN port groups and, with the userspace datapath, the
// route of VXLAN tunnels (its internal port then takes the uplinks'
// addresses).
type uplinkPlan struct {
	bridge   string
	devs     []string // failover order
	links    []netlink.Link
	mtu      int
	tunnel   bool // carries VXLAN tunnels (userspace datapath)
	move     bool // the uplinks' addresses and routes move to the internal port
	switches []string
	err      error
}

func (u *uplinkPlan) String() string {
	return fmt.Sprintf("uplink bridge %s (%s)", u.bridge, strings.Join(u.devs, ", "))
}

type switchPlan struct {
	sw                   netconf.Switch
	err                  error
	tunnel, vlan         *uplinkPlan // nil when not needed or not possible
	tunnelErr, uplinkErr error
	underlayMTU          int // of the tunnel endpoint's interface
}

type pgPlan struct {
	sw     *switchPlan
	pg     netconf.PortGroup
	mtu    int
	bridge string
	// tunnels: VXLAN port name to peer. uplink: the VLAN trunk.
	tunnels map[string]netip.Addr
	uplink  *uplinkPlan
	err     error
	// skip: not even the bridge is realized; its ports stay unattached.
	skip bool
	taps []*portPlan // attached, for policies
}

type portPlan struct {
	port  netconf.Port
	pg    *pgPlan
	err   error
	noTap bool
}

func (pg *pgPlan) String() string { return netconf.PortGroupAlias(pg.sw.sw, pg.pg) }

// report records the port group's outcome in rep.
func (pg *pgPlan) report(rep *netconf.Report) {
	if pg.err == nil {
		return
	}
	sr := rep.Switches[pg.sw.sw.ID]
	sr.PortGroups[pg.pg.ID] = pg.err
	rep.Switches[pg.sw.sw.ID] = sr
}

func (b *Backend) plan(cv *snap, want netconf.Host, rep *netconf.Report) *plan {
	p := &plan{bridges: map[string]bool{}, ovsPorts: map[string]string{}, taps: map[string]bool{}}
	byID := map[string]*pgPlan{}
	for _, sw := range want.Switches {
		sp := b.planSwitch(cv, p, sw)
		rep.Switches[sw.ID] = netconf.SwitchReport{Err: sp.err, PortGroups: map[string]error{}}
		for _, pg := range sw.PortGroups {
			pp := b.planPortGroup(sp, pg)
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
			p.bridges[pp.bridge] = true
			for name := range pp.tunnels {
				p.ovsPorts[name] = pp.bridge
			}
			if pp.uplink != nil {
				pgEnd, upEnd := PatchNames(pg.ID)
				p.ovsPorts[pgEnd], p.ovsPorts[upEnd] = pp.bridge, pp.uplink.bridge
			}
		}
	}
	for _, u := range p.uplinks {
		p.bridges[u.bridge] = true
		p.ovsPorts[u.bridge] = u.bridge // its internal port
		if len(u.devs) > 1 {
			p.ovsPorts[bondName(u.bridge)] = u.bridge
		} else {
			p.ovsPorts[u.devs[0]] = u.bridge
		}
	}
	for _, port := range want.Ports {
		p.ports = append(p.ports, b.planPort(p, byID, port))
	}
	return p
}

func (b *Backend) planPort(p *plan, byID map[string]*pgPlan, port netconf.Port) *portPlan {
	pp := &portPlan{port: port, pg: byID[port.PortGroup]}
	switch err := netconf.ValidName(port.Tap); {
	case err != nil:
		pp.err, pp.noTap = fmt.Errorf("port %q: %w", netconf.PortAlias(port), err), true
		return pp
	case p.taps[port.Tap] || p.bridges[port.Tap] || p.ovsPorts[port.Tap] != "":
		pp.err = fmt.Errorf("tap %s of %q: the name is already wanted for another device: %w", port.Tap, netconf.PortAlias(port), netconf.ErrInvalid)
		pp.noTap = true
		return pp
	case port.MAC != nil && len(port.MAC) != 6:
		pp.err = fmt.Errorf("tap %s of %q: MAC %s is not an Ethernet address: %w", port.Tap, netconf.PortAlias(port), port.MAC, netconf.ErrInvalid)
	case pp.pg == nil:
		pp.err = fmt.Errorf("tap %s of %q: port group %q is on no ovs switch of this host: %w", port.Tap, netconf.PortAlias(port), port.PortGroup, netconf.ErrInvalid)
	}
	p.taps[port.Tap] = true
	if pp.pg != nil && !pp.pg.skip && pp.err == nil {
		p.ovsPorts[port.Tap] = pp.pg.bridge
	}
	return pp
}

// planSwitch finds the switch's underlay: the interface holding LocalIP
// for VXLAN (through an uplink bridge with the userspace datapath), the
// uplinks (else that same interface) for VLANs.
func (b *Backend) planSwitch(cv *snap, p *plan, sw netconf.Switch) *switchPlan {
	sp := &switchPlan{sw: sw}
	name := orID(sw.Name, sw.ID)
	var needTunnel, needUplink bool
	for _, pg := range sw.PortGroups {
		needTunnel = needTunnel || pg.VNI > 0
		needUplink = needUplink || pg.VLAN > 0
	}
	if mtu := sw.EffectiveMTU(); mtu < 68 || mtu > 65535 {
		sp.err = fmt.Errorf("switch %s: MTU %d is outside 68..65535: %w", name, mtu, netconf.ErrInvalid)
		return sp
	}
	var base []string // the interfaces behind LocalIP
	if needTunnel || (needUplink && len(sw.Uplinks) == 0) {
		base, sp.underlayMTU, sp.tunnelErr = b.localUplinks(cv, sw)
	}
	if needTunnel && sp.tunnelErr == nil && b.datapath == DatapathNetdev {
		devs := base
		if len(sw.Uplinks) > 0 && slices.Contains(sw.Uplinks, base[0]) {
			devs = sw.Uplinks
		}
		sp.tunnel, sp.tunnelErr = b.wantUplink(cv, p, sw, devs, true)
	}
	if needUplink {
		devs, err := sw.Uplinks, sp.tunnelErr
		if len(devs) == 0 {
			devs = base
		}
		if err == nil || len(sw.Uplinks) > 0 {
			sp.vlan, err = b.wantUplink(cv, p, sw, devs, false)
		}
		sp.uplinkErr = err
	}
	if needTunnel {
		sp.err = sp.tunnelErr
	}
	if sp.uplinkErr != nil && !errors.Is(sp.err, sp.uplinkErr) {
		sp.err = errors.Join(sp.err, sp.uplinkErr)
	}
	return sp
}

// localUplinks are the host interfaces behind the switch's LocalIP:
// the interface holding it, or, when that is the internal port of an
// uplink bridge of ours (its addresses moved there), that bridge's
// uplinks. mtu is the holder's.
func (b *Backend) localUplinks(cv *snap, sw netconf.Switch) ([]string, int, error) {
	name := orID(sw.Name, sw.ID)
	if !sw.LocalIP.IsValid() {
		return nil, 0, fmt.Errorf("switch %s: no local tunnel IP: %w", name, netconf.ErrInvalid)
	}
	local := sw.LocalIP.Unmap()
	for _, a := range cv.addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || ip.Unmap() != local {
			continue
		}
		var l netlink.Link
		for _, x := range cv.links {
			if x.Attrs().Index == a.LinkIndex {
				l = x
			}
		}
		if l == nil {
			return nil, 0, fmt.Errorf("switch %s: the device holding %s (ifindex %d) is gone", name, local, a.LinkIndex)
		}
		dev := l.Attrs().Name
		if br := cv.db.bridges[dev]; br != nil && br.owned() && br.ext[extUplinks] != "" {
			return strings.Split(br.ext[extUplinks], ","), l.Attrs().MTU, nil
		}
		return []string{dev}, l.Attrs().MTU, nil
	}
	return nil, 0, fmt.Errorf("switch %s: local tunnel IP %s is on no interface of this host: %w", name, local, netconf.ErrInvalid)
}

// wantUplink adds (or finds) the uplink bridge of devs.
func (b *Backend) wantUplink(cv *snap, p *plan, sw netconf.Switch, devs []string, tunnel bool) (*uplinkPlan, error) {
	name := orID(sw.Name, sw.ID)
	bridge := UplinkBridgeName(devs)
	var u *uplinkPlan
	for _, x := range p.uplinks {
		if x.bridge == bridge {
			u = x
			continue
		}
		for _, d := range devs {
			if slices.Contains(x.devs, d) {
				return nil, fmt.Errorf("switch %s: uplink %s is already in %s of switch %s; one interface serves one set of uplinks: %w",
					name, d, x, strings.Join(x.switches, ", "), netconf.ErrInvalid)
			}
		}
	}
	if u == nil {
		u = &uplinkPlan{bridge: bridge, devs: slices.Clone(devs)}
		for _, d := range devs {
			l := cv.links[d]
			switch {
			case l == nil:
				return nil, fmt.Errorf("switch %s: uplink %s does not exist on this host: %w", name, d, netconf.ErrInvalid)
			case l.Attrs().MasterIndex != 0 && !inKernelDatapath(cv, l):
				return nil, fmt.Errorf("switch %s: uplink %s is a port of another device (ifindex %d); it cannot also be in Open vSwitch: %w", name, d, l.Attrs().MasterIndex, netconf.ErrInvalid)
			}
			if _, _, ours := netconf.AliasOwner(l.Attrs().Alias); ours {
				return nil, fmt.Errorf("switch %s: uplink %s is a device vdc made (%q), not a host interface: %w", name, d, l.Attrs().Alias, netconf.ErrInvalid)
			}
			u.links = append(u.links, l)
			if u.mtu == 0 || l.Attrs().MTU < u.mtu {
				u.mtu = l.Attrs().MTU
			}
		}
		p.uplinks = append(p.uplinks, u)
	}
	if !slices.Contains(u.switches, name) {
		u.switches = append(u.switches, name)
	}
	u.tunnel = u.tunnel || tunnel
	// The kernel datapath takes every frame of an interface in a bridge
	// away from the host's stack, so the host's addresses must move to
	// the internal port; the userspace one only sees copies, and needs
	// them there only to route its tunnels.
	u.move = u.tunnel || b.datapath == DatapathSystem
	return u, nil
}

// inKernelDatapath says whether l's master is an OVS kernel datapath
// (where the kernel datapath keeps its ports).
func inKernelDatapath(cv *snap, l netlink.Link) bool {
	for _, m := range cv.links {
		if m.Attrs().Index == l.Attrs().MasterIndex {
			return m.Type() == "openvswitch"
		}
	}
	return false
}

func (b *Backend) planPortGroup(sp *switchPlan, pg netconf.PortGroup) *pgPlan {
	pp := &pgPlan{sw: sp, pg: pg, mtu: sp.sw.EffectiveMTU(), bridge: BridgeName(pg.ID)}
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
		pp.err = pp.planVLAN()
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
	local := sp.sw.LocalIP.Unmap()
	overhead := netconf.VXLANOverhead(local)
	if need := pp.mtu + overhead; sp.underlayMTU < need {
		return fmt.Errorf("port group %s: MTU %d over VXLAN needs an underlay MTU of at least %d (%d + %d bytes of VXLAN over %s), but the interface holding %s has MTU %d; raise its MTU or lower the switch's: %w",
			pp, pp.mtu, need, pp.mtu, overhead, ipVersion(local), local, sp.underlayMTU, netconf.ErrNotSupported)
	}
	pp.tunnels = map[string]netip.Addr{}
	var errs []error
	for _, peer := range pp.pg.Peers {
		peer = peer.Unmap()
		switch {
		case !peer.IsValid() || peer.IsUnspecified() || peer.IsMulticast():
			errs = append(errs, fmt.Errorf("port group %s: peer %s is not a unicast tunnel endpoint: %w", pp, peer, netconf.ErrInvalid))
		case peer.Is4() != local.Is4():
			errs = append(errs, fmt.Errorf("port group %s: peer %s and local endpoint %s are of different IP versions: %w", pp, peer, local, netconf.ErrInvalid))
		case peer != local:
			pp.tunnels[TunnelName(pp.pg.ID, peer)] = peer
		}
	}
	return errors.Join(errs...)
}

func (pp *pgPlan) planVLAN() error {
	sp := pp.sw
	switch {
	case pp.pg.VLAN < 1 || pp.pg.VLAN > 4094:
		return fmt.Errorf("port group %s: VLAN %d is outside 1..4094: %w", pp, pp.pg.VLAN, netconf.ErrInvalid)
	case sp.uplinkErr != nil:
		return fmt.Errorf("port group %s: no uplink for VLAN %d: %w", pp, pp.pg.VLAN, sp.uplinkErr)
	}
	if have := sp.vlan.mtu; have < pp.mtu {
		return fmt.Errorf("port group %s: MTU %d on VLAN %d needs an uplink MTU of at least %d, but %s has MTU %d: %w",
			pp, pp.mtu, pp.pg.VLAN, pp.mtu, sp.vlan, have, netconf.ErrNotSupported)
	}
	pp.uplink = sp.vlan
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
