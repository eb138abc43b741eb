package api

// KindSwitch is the collection of distributed switches.
const KindSwitch = "switches"

// Switch backends.
const (
	BackendBridge = "bridge" // Linux bridges and VXLAN, through netlink
	BackendOVS    = "ovs"    // Open vSwitch
)

// Network limits.
const (
	MinMTU  = 1280 // IPv6's minimum: nothing here is IPv4-only
	MaxMTU  = 9000
	MaxVNI  = 1<<24 - 1
	MaxVLAN = 4094
)

// Switch is a distributed virtual switch: defined once for a cluster, it
// is realized by every host of the cluster by itself (the hosts' agents
// converge to it), with its port groups.
type Switch struct {
	Metadata ObjectMeta   `json:"metadata"`
	Spec     SwitchSpec   `json:"spec"`
	Status   SwitchStatus `json:"status"`
}

type SwitchSpec struct {
	Datacenter Ref    `json:"datacenter"` // the cluster's
	Cluster    Ref    `json:"cluster"`
	Backend    string `json:"backend"`
	// MTU is the guests' MTU on the switch's port groups; the hosts'
	// network carries it plus the VXLAN overhead.
	MTU int `json:"mtu"`
	// Uplinks are the hosts' interfaces the switch uses, in failover
	// order; none means the interface of the host's tunnel address.
	Uplinks     []string `json:"uplinks,omitempty"`
	Description string   `json:"description,omitempty"`
}

// SwitchStatus is computed when read, from what the hosts report.
type SwitchStatus struct {
	PortGroups int          `json:"portGroups"`
	Hosts      []SwitchHost `json:"hosts"`
}

// Realization states of a switch on a host.
const (
	RealizedOK      = "realized"
	RealizedError   = "error"
	RealizedPending = "pending" // the host has not reported this version yet
)

// SwitchHost is a switch's realization on one host of its cluster.
type SwitchHost struct {
	Host   Ref    `json:"host"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
	// PortGroups lists the port groups the host could not realize.
	PortGroups []PortGroupProblem `json:"portGroups,omitempty"`
}

type PortGroupProblem struct {
	PortGroup Ref    `json:"portGroup"`
	Reason    string `json:"reason"`
}

// Port group kinds (PortGroupStatus.Type).
const (
	PortGroupNAT      = "nat"      // no switch: QEMU user-mode networking, outbound only
	PortGroupVXLAN    = "vxlan"    // an overlay across the switch's hosts
	PortGroupVLAN     = "vlan"     // an 802.1Q VLAN of the uplinks
	PortGroupIsolated = "isolated" // the VMs of one host only
)

// PortSecurity is a port group's layer-2 security, enforced on every port.
type PortSecurity struct {
	// AllowMACChanges lets a guest receive frames for a MAC it gave
	// itself; off, a port receives unicast only for its own MAC.
	AllowMACChanges bool `json:"allowMacChanges,omitempty"`
	// AllowForgedTransmits lets a guest send from another MAC than its
	// NIC's; off, such frames are dropped.
	AllowForgedTransmits bool `json:"allowForgedTransmits,omitempty"`
	// AllowPromiscuous lets a guest see every frame of the port group.
	AllowPromiscuous bool `json:"allowPromiscuous,omitempty"`
}

// PortGroupDHCP is a port group's address service. Every host answers
// the NICs of its own VMs only, from the same ServerIP, each NIC with the
// address it was given when it was made (VMNIC.IPv4): a VM keeps its
// address wherever it runs. With IPv6Prefix every host also advertises
// that prefix to its VMs (router advertisements: SLAAC, as a router of
// the port group would, but saying it is no default router). Subnet,
// IPv6Prefix or both.
type PortGroupDHCP struct {
	Subnet     string   `json:"subnet,omitempty"`     // IPv4 CIDR: 192.0.2.0/24
	IPv6Prefix string   `json:"ipv6Prefix,omitempty"` // an IPv6 /64: 2001:db8:1::/64
	Router     string   `json:"router,omitempty"`
	DNS        []string `json:"dns,omitempty"`
	// ServerIP is the address the hosts answer from (default: the
	// subnet's last usable address); no NIC gets it.
	ServerIP string `json:"serverIP,omitempty"`
}

// TrafficShape limits one direction of each port's traffic.
type TrafficShape struct {
	AverageBitsPerSec uint64 `json:"averageBitsPerSec"`
	PeakBitsPerSec    uint64 `json:"peakBitsPerSec,omitempty"`
	BurstBytes        Size   `json:"burstBytes,omitempty"`
}

// Shaping is a port group's traffic shaping; In is towards the VMs.
type Shaping struct {
	In  *TrafficShape `json:"in,omitempty"`
	Out *TrafficShape `json:"out,omitempty"`
}

type SwitchCreateRequest struct {
	Name        string            `json:"name"`
	Cluster     string            `json:"cluster"`
	Backend     string            `json:"backend,omitempty"` // default bridge
	MTU         int               `json:"mtu,omitempty"`     // default 1500
	Uplinks     []string          `json:"uplinks,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type SwitchUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	MTU         *int              `json:"mtu,omitempty"`
	Uplinks     *[]string         `json:"uplinks,omitempty"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// HostNetwork is the desired network of one host, as the server sends it
// in a heartbeat's answer when Gen differs from what the host reported.
type HostNetwork struct {
	Gen      string       `json:"gen"`
	Switches []HostSwitch `json:"switches"`
}

// HostSwitch is a switch as one host realizes it.
type HostSwitch struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Backend string   `json:"backend"`
	MTU     int      `json:"mtu"`
	Uplinks []string `json:"uplinks,omitempty"`
	// LocalIP is the host's own tunnel address.
	LocalIP    string          `json:"localIP"`
	PortGroups []HostPortGroup `json:"portGroups"`
}

type HostPortGroup struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	VNI      int    `json:"vni,omitempty"`
	VLAN     int    `json:"vlan,omitempty"`
	Isolated bool   `json:"isolated,omitempty"`
	// Peers are the tunnel addresses of the switch's other hosts.
	Peers    []string       `json:"peers,omitempty"`
	Security PortSecurity   `json:"security"`
	Shaping  Shaping        `json:"shaping"`
	DHCP     *PortGroupDHCP `json:"dhcp,omitempty"`
}

// SwitchReport is a host's account of one switch, in its heartbeats.
type SwitchReport struct {
	Switch string `json:"switch"` // ID
	Error  string `json:"error,omitempty"`
	// PortGroups maps the IDs of the port groups not realized to why.
	PortGroups map[string]string `json:"portGroups,omitempty"`
}

func (o *Switch) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Switch) Kind() string         { return KindSwitch }

// HostUplink is one of a host's network interfaces that its switches use
// (their uplinks, the interface of the host's tunnel address), with the
// neighbours LLDP sees on it: the physical switch port it plugs into, as
// vSphere shows CDP/LLDP.
type HostUplink struct {
	Name      string         `json:"name"`
	MAC       string         `json:"mac,omitempty"`
	MTU       int            `json:"mtu,omitempty"`
	Up        bool           `json:"up"`
	Addresses []string       `json:"addresses,omitempty"`
	Neighbors []LLDPNeighbor `json:"neighbors,omitempty"`
}

// LLDPNeighbor is what a neighbour's LLDP frames say of it.
type LLDPNeighbor struct {
	ChassisID   string `json:"chassisId"`
	SysName     string `json:"sysName,omitempty"`
	Description string `json:"description,omitempty"`
	PortID      string `json:"portId"`
	PortDescr   string `json:"portDescr,omitempty"`
	MgmtIP      string `json:"mgmtIP,omitempty"`
}
