package bridge

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// linkSet is the host's devices by name, kept current as Converge
// changes them.
type linkSet map[string]netlink.Link

func (b *Backend) listLinks() (linkSet, error) {
	all, err := b.h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the host's network devices: %w", err)
	}
	links := linkSet{}
	for _, l := range all {
		links[l.Attrs().Name] = l
	}
	return links, nil
}

// refresh reads the device name again after a change.
func (b *Backend) refresh(links linkSet, name string) (netlink.Link, error) {
	l, err := b.h.LinkByName(name)
	if err != nil {
		delete(links, name)
		return nil, fmt.Errorf("read device %s: %w", name, err)
	}
	links[name] = l
	return l, nil
}

// ownKinds are the kinds of device this backend makes.
var ownKinds = map[string]bool{"bridge": true, "vxlan": true, "vlan": true, "tuntap": true}

// owned says whether this backend made l: its alias says so, and it is
// of a kind the backend makes; or it is half-made (see halfMade).
func owned(l netlink.Link) bool {
	backend, _, ok := netconf.AliasOwner(l.Attrs().Alias)
	return (ok && backend == Name && ownKinds[l.Type()]) || halfMade(l)
}

// halfMade says whether l is a device this backend created but did not
// get to name with its alias (the kernel takes no alias in the request
// that creates a device; an agent killed in between leaves this): no
// alias, vdc's device group (set at creation), and a name of this
// backend's scheme for its kind.
func halfMade(l netlink.Link) bool {
	a := l.Attrs()
	if a.Alias != "" || a.Group != netconf.DeviceGroup || len(a.Name) != 12 {
		return false
	}
	for _, c := range a.Name[2:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	kind := map[string]string{"vb": "bridge", "vx": "vxlan", "vl": "vlan"}[a.Name[:2]]
	return kind != "" && kind == l.Type()
}

func alias(what string) string { return netconf.Alias(Name, what) }

// removeLeftovers deletes every device this backend made that the plan
// does not want under that name and kind. Deleting a bridge detaches
// its ports; a wanted tap is attached again later in the Converge.
func (b *Backend) removeLeftovers(links linkSet, p *plan) error {
	var errs []error
	// Taps first, then VXLAN and VLAN devices, then bridges: a bridge
	// goes once nothing of ours is in it.
	for _, kind := range []string{"tuntap", "vxlan", "vlan", "bridge"} {
		for name, l := range links {
			if l.Type() != kind || !owned(l) || p.names[name] == kind {
				continue
			}
			if err := b.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
				errs = append(errs, fmt.Errorf("remove leftover %s %s (%s): %w", kind, name, l.Attrs().Alias, err))
				continue
			}
			b.log.Info("removed leftover device", "device", name, "kind", kind, "alias", l.Attrs().Alias)
			delete(links, name)
		}
	}
	return errors.Join(errs...)
}

// want is the state of a device's common attributes.
type want struct {
	alias  string
	mtu    int
	master int // index of the bridge; 0: no master
	up     bool
	mac    net.HardwareAddr // nil: leave as it is
}

// fix changes what differs between l and w, and only that, so that a
// Converge with nothing to do changes nothing.
func (b *Backend) fix(l netlink.Link, w want) error {
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
	if a.MasterIndex != w.master {
		var err error
		if w.master == 0 {
			err = b.h.LinkSetNoMaster(l)
		} else {
			err = b.h.LinkSetMasterByIndex(l, w.master)
		}
		if err != nil {
			return fmt.Errorf("attach %s to bridge index %d (was %d): %w", a.Name, w.master, a.MasterIndex, err)
		}
		log.Info("set master", "master", w.master, "was", a.MasterIndex)
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

// noIPv6 keeps the kernel from giving a new device an IPv6 link-local
// address: the host takes no part in its guests' networks (no address
// a guest could reach it on, no router solicitations into them).
func (b *Backend) noIPv6(l netlink.Link) {
	if err := b.h.LinkSetIP6AddrGenMode(l, in6AddrGenModeNone); err != nil {
		b.log.Debug("cannot turn IPv6 address generation off (IPv6 disabled?)", "device", l.Attrs().Name, "err", err)
	}
}

// newAttrs are the attributes of a device to make.
func newAttrs(name, alias string, mtu int) netlink.LinkAttrs {
	la := netlink.NewLinkAttrs()
	la.Name, la.Alias, la.MTU = name, alias, mtu
	la.Group = netconf.DeviceGroup
	return la
}

// randomMAC is a random locally administered unicast address.
func randomMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	_, _ = rand.Read(mac)
	mac[0] = mac[0]&^1 | 2
	return mac
}

// tapMAC is a tap's own address for a guest MAC: the guest's with the
// first byte fe, as libvirt does. It must differ from the guest's, or
// the bridge would take frames to the guest for itself.
func tapMAC(guest net.HardwareAddr) net.HardwareAddr {
	if len(guest) != 6 {
		return nil
	}
	mac := append(net.HardwareAddr(nil), guest...)
	mac[0] = 0xfe
	return mac
}

// probeVLAN asks the kernel for a VLAN device on a parent that cannot
// exist: a kernel with 8021q answers "no such device", one without
// "operation not supported" (no such link kind). Nothing is made.
func (b *Backend) probeVLAN() error {
	la := newAttrs("vdcprobe8021q", "", 0)
	la.Group = 0
	la.ParentIndex = math.MaxInt32
	err := b.h.LinkAdd(&netlink.Vlan{LinkAttrs: la, VlanId: 1})
	switch {
	case err == nil:
		_ = b.h.LinkDel(&netlink.Vlan{LinkAttrs: la})
		return nil
	case errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("this host's kernel has no 802.1Q VLAN support (8021q): VLAN port groups need it (load the 8021q module, or use the ovs backend): %w", netconf.ErrNotSupported)
	}
	return nil
}

// in6AddrGenModeNone is IN6_ADDR_GEN_MODE_NONE (linux/if_link.h).
const in6AddrGenModeNone = 1
