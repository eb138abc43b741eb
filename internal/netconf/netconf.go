// Package netconf realizes a host's share of the distributed virtual
// switches: the agent hands a Backend the whole desired state of the
// host's networks (Host) and the backend converges the host to it,
// making what is missing, changing what differs and removing what vdc
// made before and no longer wants. Converge is idempotent and is the one
// way networks change, so an agent restarted half-way through a change
// simply converges again.
//
// Two backends implement Backend and pass one conformance suite
// (netconftest): bridge (Linux bridges, VXLAN with unicast flood lists,
// taps, through netlink; policies with nftables and tc) and ovs (Open
// vSwitch, the userspace datapath where the kernel module is missing).
package netconf

import (
	"context"
	"net"
	"net/netip"
)

// Host is the desired network state of one host.
type Host struct {
	Switches []Switch
	// Ports are the NICs of the VMs this host runs or is about to run
	// (an incoming migration's too). A port whose port group is not in
	// Switches is an error in the report, not a panic.
	Ports []Port
}

// Switch is a distributed switch as one host realizes it.
type Switch struct {
	ID   string
	Name string
	// MTU of the VMs' networks on this switch (the guests' MTU); the
	// backend adds the VXLAN overhead to the underlay where it can and
	// reports when the underlay is too small.
	MTU int
	// Uplinks are the host interfaces the switch uses, in failover order;
	// none means the interface that routes to LocalIP.
	Uplinks []string
	// LocalIP is this host's tunnel endpoint (its address on the network
	// that joins the hosts).
	LocalIP    netip.Addr
	PortGroups []PortGroup
}

// PortGroup is one network of a switch. Exactly one of VNI, VLAN or
// Isolated says what kind.
type PortGroup struct {
	ID   string
	Name string
	VNI  int // VXLAN network identifier, 1..16777215
	VLAN int // 802.1Q tag, 1..4094
	// Isolated port groups join only the VMs of one host.
	Isolated bool
	// Peers are the tunnel endpoints of the switch's other hosts: the
	// VXLAN flood list (head-end replication).
	Peers  []netip.Addr
	Policy Policy
}

// Policy is a port group's security and shaping, enforced on each port.
type Policy struct {
	AllowMACChanges      bool // frames to a MAC other than the port's reach it
	AllowForgedTransmits bool // frames from a MAC other than the port's leave it
	AllowPromiscuous     bool
	In, Out              Shape // In: towards the VM; Out: from the VM
}

// Shape limits a direction of a port's traffic; zero means no limit.
type Shape struct {
	AverageBitsPerSec uint64
	PeakBitsPerSec    uint64
	BurstBytes        uint64
}

// Port is a VM's NIC: a tap device the backend makes (persistent, so
// that QEMU opens it by name and it outlives the agent) and attaches to
// its port group.
type Port struct {
	Tap       string // device name, see TapName
	Alias     string // shown by `ip link` ("vm db1 nic0")
	MAC       net.HardwareAddr
	PortGroup string // port group ID
	Down      bool   // link administratively down
}

// Report is what a Converge achieved.
type Report struct {
	Switches map[string]SwitchReport // by switch ID
	Ports    map[string]error        // by tap; nil when attached
}

// SwitchReport is one switch's realization on this host.
type SwitchReport struct {
	// Err is why the switch as a whole is not realized (nil: realized).
	Err error
	// PortGroups holds the port groups that could not be realized, with
	// the reason (a VLAN port group where the kernel has no 8021q, say).
	PortGroups map[string]error
}

// Caps says what a backend can do on this host.
type Caps struct {
	VLAN    error // nil when VLAN port groups work, else why not
	Teaming error // nil when more than one uplink can be teamed
}

// Backend converges a host's networks of one kind.
type Backend interface {
	Name() string // "bridge" or "ovs"
	Caps(ctx context.Context) Caps
	// Converge makes the host match want, for this backend's switches:
	// it is given only the switches of its kind and their ports, and
	// removes every device it made that want does not hold.
	Converge(ctx context.Context, want Host) (Report, error)
}

// PortPolicy is one port as policy enforcement (nftables bridge rules,
// tc shaping) sees it, after the backend made its tap.
type PortPolicy struct {
	Tap       string // the port's tap device
	PortGroup string // port group ID
	MAC       net.HardwareAddr
	Policy    Policy
}

// PolicyEnforcer enforces port-group policies on a host's ports. A
// backend that has one calls it at the end of every Converge with every
// port it attached, so that it can also remove what it did for ports
// that are gone.
type PolicyEnforcer interface {
	Converge(ctx context.Context, ports []PortPolicy) error
}
