package ovs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/tap"
)

func alias(what string) string { return netconf.Alias(Name, what) }

// ownedLink says whether the backend made the kernel device l: its
// alias says so.
func ownedLink(l netlink.Link) bool {
	backend, _, ok := netconf.AliasOwner(l.Attrs().Alias)
	return ok && backend == Name
}

// convergePort makes the port's tap (persistent, so QEMU opens it by
// name) and makes it a port of its port group's bridge. A port whose
// port group is unknown or not realized still gets its tap, in no
// bridge, so that its VM can start with the NIC disconnected; the error
// says why.
func (b *Backend) convergePort(ctx context.Context, cv *snap, pp *portPlan) error {
	port := pp.port
	if pp.noTap {
		return pp.err
	}
	al := alias(netconf.PortAlias(port))
	mtu := netconf.DefaultMTU
	notAttached := pp.err
	attach := false
	if pp.pg != nil {
		mtu = pp.pg.mtu
		if pp.pg.skip {
			notAttached = errors.Join(notAttached, fmt.Errorf("tap %s of %q: port group %s is not realized: %w", port.Tap, netconf.PortAlias(port), pp.pg, pp.pg.err))
		} else {
			attach = pp.err == nil
		}
	}
	l, err := b.ensureTap(cv, port, al, mtu)
	if err != nil {
		return errors.Join(pp.err, err)
	}
	if err := b.fix(l, linkWant{alias: al, mtu: mtu, up: !port.Down, mac: tapMAC(port.MAC)}); err != nil {
		return errors.Join(pp.err, fmt.Errorf("tap %s of %q: %w", port.Tap, netconf.PortAlias(port), err))
	}
	if !attach {
		if p := cv.db.ports[port.Tap]; p != nil && p.owned() {
			if err := b.delPort(ctx, cv, port.Tap); err != nil {
				return errors.Join(notAttached, err)
			}
		}
		return notAttached
	}
	err = b.ensurePort(ctx, cv, wantPort{name: port.Tap, bridge: pp.pg.bridge, role: "tap",
		ext: map[string]string{extPortGroup: pp.pg.pg.ID}})
	if err != nil {
		return fmt.Errorf("tap %s of %q: %w", port.Tap, netconf.PortAlias(port), err)
	}
	pp.pg.taps = append(pp.pg.taps, pp)
	return nil
}

func (b *Backend) ensureTap(cv *snap, port netconf.Port, al string, mtu int) (netlink.Link, error) {
	name := port.Tap
	l := cv.links[name]
	if l != nil && !ownedLink(l) {
		return nil, fmt.Errorf("tap %s of %q: %w (a %s, alias %q)", name, netconf.PortAlias(port), netconf.ErrForeign, l.Type(), l.Attrs().Alias)
	}
	if t, ok := l.(*netlink.Tuntap); l != nil && (!ok || t.Mode != netlink.TUNTAP_MODE_TAP) {
		if err := b.h.LinkDel(l); err != nil {
			return nil, fmt.Errorf("replace %s device %s with a tap for %q: %w", l.Type(), name, netconf.PortAlias(port), err)
		}
		delete(cv.links, name)
		l = nil
	}
	if l != nil {
		return l, nil
	}
	// Named and given its alias while only the descriptor holds it, and
	// only then made persistent: an agent killed in between leaves
	// nothing behind, and a tap that stays is always recognisably ours.
	err := tap.Create(b.ns, name, func() error {
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
	l, err = b.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("read the new tap %s: %w", name, err)
	}
	cv.links[name] = l
	return l, nil
}

// linkWant is the state of a kernel device's common attributes.
type linkWant struct {
	alias string
	mtu   int
	up    bool
	mac   net.HardwareAddr // nil: leave as it is
}

// fix changes what differs between l and w, and only that, so that a
// Converge with nothing to do changes nothing.
func (b *Backend) fix(l netlink.Link, w linkWant) error {
	a := l.Attrs()
	log := b.log.With("device", a.Name)
	if a.Alias != w.alias {
		if err := b.h.LinkSetAlias(l, w.alias); err != nil {
			return fmt.Errorf("set alias of %s to %q: %w", a.Name, w.alias, err)
		}
		log.Info("set alias", "alias", w.alias)
	}
	if w.mac != nil && !bytes.Equal(a.HardwareAddr, w.mac) {
		if err := b.h.LinkSetHardwareAddr(l, w.mac); err != nil {
			return fmt.Errorf("set MAC of %s to %s: %w", a.Name, w.mac, err)
		}
		log.Info("set MAC", "mac", w.mac.String())
	}
	if a.Group != netconf.DeviceGroup {
		if err := b.h.LinkSetGroup(l, netconf.DeviceGroup); err != nil {
			return fmt.Errorf("set device group of %s to %d: %w", a.Name, netconf.DeviceGroup, err)
		}
		log.Info("set device group", "group", netconf.DeviceGroup)
	}
	if a.MTU != w.mtu {
		if err := b.h.LinkSetMTU(l, w.mtu); err != nil {
			return fmt.Errorf("set MTU of %s to %d (was %d): %w", a.Name, w.mtu, a.MTU, err)
		}
		log.Info("set MTU", "mtu", w.mtu, "was", a.MTU)
	}
	if isUp := a.Flags&net.FlagUp != 0; isUp != w.up {
		var err error
		if w.up {
			err = b.h.LinkSetUp(l)
		} else {
			err = b.h.LinkSetDown(l)
		}
		if err != nil {
			return fmt.Errorf("set %s up=%v: %w", a.Name, w.up, err)
		}
		log.Info("set link state", "up", w.up)
	}
	return nil
}

// noIPv6 keeps the kernel from giving a tap an IPv6 link-local address:
// the host takes no part in its guests' networks.
func (b *Backend) noIPv6(l netlink.Link) {
	if err := b.h.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone); err != nil {
		b.log.Debug("cannot turn IPv6 address generation off (IPv6 disabled?)", "device", l.Attrs().Name, "err", err)
	}
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h).
const in6AddrGenModeNone = 1

// tapMAC is a tap's own address for a guest MAC: the guest's with the
// first byte fe, as libvirt does (and the bridge backend).
func tapMAC(guest net.HardwareAddr) net.HardwareAddr {
	if len(guest) != 6 {
		return nil
	}
	mac := append(net.HardwareAddr(nil), guest...)
	mac[0] = 0xfe
	return mac
}
