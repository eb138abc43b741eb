package bridge

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/vdc-project/vdc/internal/netconf"
)

// convergePort makes the port's tap (persistent, so QEMU opens it by
// name) and attaches it to its port group's bridge. A port whose port
// group is unknown or not realized still gets its tap, unattached, so
// that its VM can start with the NIC disconnected; the error says why.
func (b *Backend) convergePort(links linkSet, pp *portPlan) error {
	port := pp.port
	if pp.noTap {
		return pp.err
	}
	al := alias(netconf.PortAlias(port))
	mtu, master := netconf.DefaultMTU, 0
	notAttached := pp.err
	if pp.pg != nil {
		mtu = pp.pg.mtu
		if pp.pg.skip {
			notAttached = errors.Join(notAttached, fmt.Errorf("tap %s of %q: port group %s is not realized: %w", port.Tap, netconf.PortAlias(port), pp.pg, pp.pg.err))
		} else {
			master = pp.pg.bridgeIndex
		}
	}
	l, err := b.ensureTap(links, port, al, mtu)
	if err != nil {
		return errors.Join(pp.err, err)
	}
	if err := b.fix(l, want{alias: al, mtu: mtu, master: master, up: !port.Down, mac: tapMAC(port.MAC)}); err != nil {
		return errors.Join(pp.err, fmt.Errorf("tap %s of %q: %w", port.Tap, netconf.PortAlias(port), err))
	}
	return notAttached
}

func (b *Backend) ensureTap(links linkSet, port netconf.Port, al string, mtu int) (netlink.Link, error) {
	name := port.Tap
	l := links[name]
	if l != nil && !owned(l) {
		return nil, fmt.Errorf("tap %s of %q: %w (a %s, alias %q)", name, netconf.PortAlias(port), netconf.ErrForeign, l.Type(), l.Attrs().Alias)
	}
	if t, ok := l.(*netlink.Tuntap); ok && t.Mode != netlink.TUNTAP_MODE_TAP {
		if err := b.h.LinkDel(l); err != nil {
			return nil, fmt.Errorf("replace tun device %s with a tap for %q: %w", name, netconf.PortAlias(port), err)
		}
		delete(links, name)
		l = nil
	}
	if l != nil {
		return l, nil
	}
	// The tap is made without persistence first, named and given its
	// alias while the descriptor holds it, and only then made
	// persistent: an agent killed in between leaves nothing behind, and
	// a tap that stays is always recognisably ours.
	err := createTap(b.ns, name, func() error {
		t, err := b.h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("read the new tap %s: %w", name, err)
		}
		b.noIPv6(t)
		if err := b.h.LinkSetAlias(t, al); err != nil {
			return fmt.Errorf("set alias of the new tap %s: %w", name, err)
		}
		if err := b.h.LinkSetGroup(t, netconf.DeviceGroup); err != nil {
			return fmt.Errorf("set device group of the new tap %s: %w", name, err)
		}
		if err := b.h.LinkSetMTU(t, mtu); err != nil {
			return fmt.Errorf("set MTU of the new tap %s to %d: %w", name, mtu, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("create tap %s for %q: %w", name, netconf.PortAlias(port), err)
	}
	b.log.Info("created tap", "device", name, "alias", al, "portgroup", port.PortGroup)
	return b.refresh(links, name)
}
