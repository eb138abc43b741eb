package netconf

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Error classes a backend wraps with %w in a Report.
var (
	// ErrNotSupported: this host or backend cannot realize what was
	// asked (a VLAN port group where the kernel has no 8021q).
	ErrNotSupported = errors.New("not supported on this host")
	// ErrInvalid: the desired state itself is wrong (a port whose port
	// group is on no switch, a device name too long).
	ErrInvalid = errors.New("invalid network state")
	// ErrForeign: a device vdc wants to make exists and was not made by
	// vdc; the backend leaves it alone.
	ErrForeign = errors.New("device exists and was not made by vdc")
)

// MaxNameLen is the longest Linux interface name (IFNAMSIZ - 1).
const MaxNameLen = 15

// DefaultMTU is a switch's MTU when Switch.MTU is 0.
const DefaultMTU = 1500

// VXLAN encapsulation overhead on the underlay: outer Ethernet (14),
// IP (20 or 40), UDP (8) and VXLAN (8) headers.
const (
	VXLANOverheadIPv4 = 50
	VXLANOverheadIPv6 = 70
)

// VXLANPort is the IANA VXLAN UDP port every backend uses.
const VXLANPort = 4789

// EffectiveMTU is the switch's MTU, DefaultMTU when unset.
func (s Switch) EffectiveMTU() int {
	if s.MTU <= 0 {
		return DefaultMTU
	}
	return s.MTU
}

// VXLANOverhead is the underlay overhead of a VXLAN tunnel from local.
func VXLANOverhead(local netip.Addr) int {
	if local.Is4() || local.Is4In6() {
		return VXLANOverheadIPv4
	}
	return VXLANOverheadIPv6
}

// Device names. Every name is at most MaxNameLen characters and depends
// only on its input, so a restarted agent finds the devices it made.

// TapName is the tap device of a VM's NIC: "vt", 8 hex digits of the
// SHA-256 of the VM ID, "n" and the NIC's index ("vt1a2b3c4dn0").
// Indexes from 0 to 9999 fit; larger ones hash the index into the name
// too ("vt" and 12 hex digits, still unique for practical purposes).
func TapName(vmID string, nic int) string {
	if nic >= 0 && nic <= 9999 {
		return "vt" + hash(vmID, 8) + "n" + strconv.Itoa(nic)
	}
	return "vt" + hash(vmID+"\x00"+strconv.Itoa(nic), 12) + "n"
}

// BridgeName is the Linux bridge a backend makes for a port group:
// "vb" and 10 hex digits of the SHA-256 of the port group ID.
func BridgeName(portGroupID string) string { return "vb" + hash(portGroupID, 10) }

// VXLANName is a port group's VXLAN device: "vx" and 10 hex digits.
func VXLANName(portGroupID string) string { return "vx" + hash(portGroupID, 10) }

// VLANName is a port group's 802.1Q sub-interface of the uplink: "vl"
// and 10 hex digits.
func VLANName(portGroupID string) string { return "vl" + hash(portGroupID, 10) }

func hash(s string, digits int) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:digits]
}

// DeviceGroup is the device group (IFLA_GROUP; `ip link show group
// 7759971`) of every device vdc makes. Unlike the alias, the group is
// set in the same netlink request that creates a device, so a device
// whose maker died before it got its alias is still recognisable.
const DeviceGroup = 0x766463 // "vdc"

// Device aliases (IFLA_IFALIAS, shown by `ip link`) mark every device
// vdc made, and which backend made it: "vdc/bridge: portgroup web
// (switch dvs1)", "vdc/bridge: vm db1 nic0". A backend removes only
// devices whose alias names it, so it never touches a device it did
// not make (nor one another backend made).

const aliasPrefix = "vdc/"

// maxAlias is IFALIASZ - 1.
const maxAlias = 255

// Alias is the alias a backend gives a device it made, describing it
// with what ("portgroup web (switch dvs1)").
func Alias(backend, what string) string {
	a := aliasPrefix + backend + ": " + what
	if len(a) > maxAlias {
		a = a[:maxAlias]
	}
	return a
}

// AliasOwner parses an alias made by Alias: the backend that made the
// device and what it is. ok is false for devices vdc did not make.
func AliasOwner(alias string) (backend, what string, ok bool) {
	rest, found := strings.CutPrefix(alias, aliasPrefix)
	if !found {
		return "", "", false
	}
	backend, what, found = strings.Cut(rest, ": ")
	if !found || backend == "" {
		return "", "", false
	}
	return backend, what, true
}

// PortGroupAlias describes a port group's bridge: "portgroup web
// (switch dvs1)"; names fall back to IDs.
func PortGroupAlias(sw Switch, pg PortGroup) string {
	return fmt.Sprintf("portgroup %s (switch %s)", orID(pg.Name, pg.ID), orID(sw.Name, sw.ID))
}

// PortGroupDeviceAlias describes another device of a port group, its
// VXLAN device or VLAN sub-interface: "vxlan 42 of portgroup web
// (switch dvs1)".
func PortGroupDeviceAlias(kind string, sw Switch, pg PortGroup) string {
	return kind + " of " + PortGroupAlias(sw, pg)
}

// PortAlias describes a port's tap: the port's Alias ("vm db1 nic0"),
// or "port" and its tap name when it has none.
func PortAlias(p Port) string {
	if p.Alias != "" {
		return p.Alias
	}
	return "port " + p.Tap
}

// NICAlias is the Port.Alias of a VM's NIC: "vm db1 nic0".
func NICAlias(vmName string, nic int) string {
	return "vm " + vmName + " nic" + strconv.Itoa(nic)
}

func orID(name, id string) string {
	if name != "" {
		return name
	}
	return id
}

// ValidName says why name cannot be an interface name, or nil.
func ValidName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty device name: %w", ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("device name %q is longer than %d characters: %w", name, MaxNameLen, ErrInvalid)
	case name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("device name %q has a character Linux refuses: %w", name, ErrInvalid)
	}
	return nil
}
