package bridge

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// convergePortGroup realizes a port group's bridge and, for VXLAN and
// VLAN port groups, the device joining it to the other hosts. A port
// group whose uplink part fails keeps its bridge (its local ports still
// reach each other) and reports why.
func (b *Backend) convergePortGroup(links linkSet, pg *pgPlan) {
	if pg.skip {
		return
	}
	br, err := b.ensureBridge(links, pg)
	if err != nil {
		pg.err, pg.skip = errors.Join(pg.err, err), true
		return
	}
	pg.bridgeIndex = br.Attrs().Index
	if pg.vxlan != "" {
		if err := b.ensureVXLAN(links, pg); err != nil {
			pg.err = errors.Join(pg.err, err)
		}
	}
	if pg.vlan != "" {
		if err := b.ensureVLAN(links, pg); err != nil {
			pg.err = errors.Join(pg.err, err)
		}
	}
}

func (b *Backend) ensureBridge(links linkSet, pg *pgPlan) (netlink.Link, error) {
	name, al := pg.bridge, alias(netconf.PortGroupAlias(pg.sw.sw, pg.pg))
	l := links[name]
	switch {
	case l != nil && !owned(l):
		return nil, fmt.Errorf("bridge %s of port group %s: %w (alias %q)", name, pg, netconf.ErrForeign, l.Attrs().Alias)
	case l == nil:
		la := newAttrs(name, al, pg.mtu)
		// A fixed address, so the bridge's does not follow its ports'.
		la.HardwareAddr = randomMAC()
		off := false
		if err := b.h.LinkAdd(&netlink.Bridge{LinkAttrs: la, MulticastSnooping: &off}); err != nil {
			return nil, fmt.Errorf("create bridge %s for port group %s: %w", name, pg, err)
		}
		b.log.Info("created bridge", "device", name, "portgroup", pg.pg.ID, "alias", al)
		var err error
		if l, err = b.refresh(links, name); err != nil {
			return nil, fmt.Errorf("port group %s: %w", pg, err)
		}
		b.noIPv6(l)
	}
	if err := b.fix(l, want{alias: al, mtu: pg.mtu, up: true}); err != nil {
		return nil, fmt.Errorf("port group %s: %w", pg, err)
	}
	return l, nil
}

func (b *Backend) ensureVXLAN(links linkSet, pg *pgPlan) error {
	sw := pg.sw
	name := pg.vxlan
	al := alias(netconf.PortGroupDeviceAlias(fmt.Sprintf("vxlan %d", pg.pg.VNI), sw.sw, pg.pg))
	la := newAttrs(name, al, pg.mtu)
	wantVX := &netlink.Vxlan{
		LinkAttrs:    la,
		VxlanId:      pg.pg.VNI,
		VtepDevIndex: sw.tunnel.Attrs().Index,
		SrcAddr:      net.IP(sw.sw.LocalIP.Unmap().AsSlice()),
		Port:         netconf.VXLANPort,
		Learning:     true,
	}
	l := links[name]
	if l != nil && !owned(l) {
		return fmt.Errorf("VXLAN device %s of port group %s: %w (alias %q)", name, pg, netconf.ErrForeign, l.Attrs().Alias)
	}
	if have, ok := l.(*netlink.Vxlan); ok && !vxlanMatches(have, wantVX) {
		// VNI, endpoint and port cannot change on a live device.
		if err := b.h.LinkDel(l); err != nil {
			return fmt.Errorf("replace VXLAN device %s of port group %s: %w", name, pg, err)
		}
		b.log.Info("removed VXLAN device to remake it", "device", name, "vni", have.VxlanId, "local", have.SrcAddr)
		delete(links, name)
		l = nil
	}
	if l == nil {
		if err := b.h.LinkAdd(wantVX); err != nil {
			return fmt.Errorf("create VXLAN device %s (VNI %d, local %s, dev %s) for port group %s: %w",
				name, pg.pg.VNI, sw.sw.LocalIP, sw.tunnel.Attrs().Name, pg, err)
		}
		b.log.Info("created VXLAN device", "device", name, "vni", pg.pg.VNI, "local", sw.sw.LocalIP, "portgroup", pg.pg.ID)
		var err error
		if l, err = b.refresh(links, name); err != nil {
			return fmt.Errorf("port group %s: %w", pg, err)
		}
		b.noIPv6(l)
	}
	if err := b.fix(l, want{alias: al, mtu: pg.mtu, master: pg.bridgeIndex, up: true}); err != nil {
		return fmt.Errorf("port group %s: %w", pg, err)
	}
	return b.syncFlood(l, pg)
}

func vxlanMatches(have, want *netlink.Vxlan) bool {
	return have.VxlanId == want.VxlanId && have.SrcAddr.Equal(want.SrcAddr) &&
		have.Port == want.Port && have.VtepDevIndex == want.VtepDevIndex &&
		have.Learning && !have.FlowBased && (have.Group == nil || have.Group.IsUnspecified())
}

var zeroMAC = net.HardwareAddr{0, 0, 0, 0, 0, 0}

// syncFlood makes the VXLAN device's flood list (its all-zeros FDB
// entries) exactly the port group's peers: missing ones appended, stale
// ones deleted, the others left alone.
func (b *Backend) syncFlood(vx netlink.Link, pg *pgPlan) error {
	local := pg.sw.sw.LocalIP.Unmap()
	peers := map[netip.Addr]bool{}
	var errs []error
	for _, p := range pg.pg.Peers {
		p = p.Unmap()
		switch {
		case !p.IsValid() || p.IsUnspecified() || p.IsMulticast():
			errs = append(errs, fmt.Errorf("port group %s: peer %s is not a unicast tunnel endpoint: %w", pg, p, netconf.ErrInvalid))
		case p.Is4() != local.Is4():
			errs = append(errs, fmt.Errorf("port group %s: peer %s and local endpoint %s are of different IP versions: %w", pg, p, local, netconf.ErrInvalid))
		case p != local:
			peers[p] = false
		}
	}
	have, err := b.h.NeighList(vx.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("list the flood list of %s (port group %s): %w", vx.Attrs().Name, pg, err)
	}
	for _, n := range have {
		ip, ok := floodEntry(n)
		if !ok {
			continue
		}
		if _, wanted := peers[ip]; wanted {
			peers[ip] = true
			continue
		}
		if err := b.h.NeighDel(floodNeigh(vx, ip)); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove stale peer %s from the flood list of %s (port group %s): %w", ip, vx.Attrs().Name, pg, err))
			continue
		}
		b.log.Info("removed peer from flood list", "device", vx.Attrs().Name, "peer", ip)
	}
	missing := make([]netip.Addr, 0, len(peers))
	for ip, present := range peers {
		if !present {
			missing = append(missing, ip)
		}
	}
	slices.SortFunc(missing, func(a, b netip.Addr) int { return a.Compare(b) })
	for _, ip := range missing {
		if err := b.h.NeighAppend(floodNeigh(vx, ip)); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s to the flood list of %s (port group %s): %w", ip, vx.Attrs().Name, pg, err))
			continue
		}
		b.log.Info("added peer to flood list", "device", vx.Attrs().Name, "peer", ip)
	}
	return errors.Join(errs...)
}

// floodEntry says whether n is a flood-list entry of a VXLAN device (a
// self entry for the all-zeros MAC with a remote) and its remote.
func floodEntry(n netlink.Neigh) (netip.Addr, bool) {
	if n.Flags&netlink.NTF_SELF == 0 || !slices.Equal(n.HardwareAddr, zeroMAC) || n.IP == nil {
		return netip.Addr{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	return ip.Unmap(), ok
}

func floodNeigh(vx netlink.Link, ip netip.Addr) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    vx.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_NOARP | netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           net.IP(ip.AsSlice()),
		HardwareAddr: zeroMAC,
	}
}

func (b *Backend) ensureVLAN(links linkSet, pg *pgPlan) error {
	name, uplink := pg.vlan, pg.sw.uplink
	al := alias(netconf.PortGroupDeviceAlias(fmt.Sprintf("vlan %d", pg.pg.VLAN), pg.sw.sw, pg.pg))
	l := links[name]
	if l != nil && !owned(l) {
		return fmt.Errorf("VLAN device %s of port group %s: %w (alias %q)", name, pg, netconf.ErrForeign, l.Attrs().Alias)
	}
	if have, ok := l.(*netlink.Vlan); ok && (have.VlanId != pg.pg.VLAN || have.ParentIndex != uplink.Attrs().Index) {
		if err := b.h.LinkDel(l); err != nil {
			return fmt.Errorf("replace VLAN device %s of port group %s: %w", name, pg, err)
		}
		b.log.Info("removed VLAN device to remake it", "device", name, "vlan", have.VlanId)
		delete(links, name)
		l = nil
	}
	if l == nil {
		la := newAttrs(name, al, pg.mtu)
		la.ParentIndex = uplink.Attrs().Index
		if err := b.h.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: pg.pg.VLAN}); err != nil {
			return fmt.Errorf("create VLAN device %s (VLAN %d on %s) for port group %s: %w", name, pg.pg.VLAN, uplink.Attrs().Name, pg, err)
		}
		b.log.Info("created VLAN device", "device", name, "vlan", pg.pg.VLAN, "uplink", uplink.Attrs().Name, "portgroup", pg.pg.ID)
		var err error
		if l, err = b.refresh(links, name); err != nil {
			return fmt.Errorf("port group %s: %w", pg, err)
		}
		b.noIPv6(l)
	}
	if err := b.fix(l, want{alias: al, mtu: pg.mtu, master: pg.bridgeIndex, up: true}); err != nil {
		return fmt.Errorf("port group %s: %w", pg, err)
	}
	return nil
}
