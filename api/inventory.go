package api

import "time"

// Datacenter is the top of the inventory: clusters, datastores and port
// groups belong to one.
type Datacenter struct {
	Metadata ObjectMeta     `json:"metadata"`
	Spec     DatacenterSpec `json:"spec"`
}

type DatacenterSpec struct {
	Description string `json:"description,omitempty"`
}

// Cluster groups hosts that share datastores and networks; VMs are placed
// and pooled within a cluster.
type Cluster struct {
	Metadata ObjectMeta    `json:"metadata"`
	Spec     ClusterSpec   `json:"spec"`
	Status   ClusterStatus `json:"status"`
}

// Default overcommit ratios: vCPUs may exceed physical CPUs four times,
// memory not at all.
const (
	DefaultCPUOvercommit    = 4.0
	DefaultMemoryOvercommit = 1.0
)

type ClusterSpec struct {
	Datacenter  Ref    `json:"datacenter"`
	Description string `json:"description,omitempty"`
	// CPUOvercommit is how many vCPUs of powered-on VMs a host may carry per
	// physical CPU; MemoryOvercommit the same for memory.
	CPUOvercommit    float64 `json:"cpuOvercommit"`
	MemoryOvercommit float64 `json:"memoryOvercommit"`
	// HA restarts the VMs of failed hosts and resets hung guests.
	HA *ClusterHA `json:"ha,omitempty"`
}

// ClusterStatus is computed when the cluster is read.
type ClusterStatus struct {
	Hosts          int  `json:"hosts"`
	ConnectedHosts int  `json:"connectedHosts"`
	VMs            int  `json:"vms"`
	CPUs           int  `json:"cpus"`
	MemoryBytes    Size `json:"memoryBytes"`
	UsedCPUs       int  `json:"usedCpus"`
	UsedMemory     Size `json:"usedMemoryBytes"`
}

// Connection states of a host.
const (
	HostConnected    = "connected"
	HostDisconnected = "disconnected"
)

// Host is a hypervisor machine running `vdc agent`.
type Host struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     HostSpec   `json:"spec"`
	Status   HostStatus `json:"status"`
}

type HostSpec struct {
	Cluster Ref `json:"cluster"`
	// Maintenance keeps new VMs and power-ons off the host.
	Maintenance bool `json:"maintenance"`
}

type HostStatus struct {
	Connection     string    `json:"connection"`
	LastHeartbeat  time.Time `json:"lastHeartbeat,omitzero"`
	ConnectedSince time.Time `json:"connectedSince,omitzero"`
	// Address is where the agent's API listens (host:port), as it reported.
	Address  string `json:"address,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Driver   string `json:"driver,omitempty"`
	// Accel is the acceleration the driver uses: kvm, tcg or sim.
	Accel string `json:"accel,omitempty"`
	// AccelReason says why the host's VMs do not run under KVM (its
	// probe's failure, or TCG was asked for); empty under KVM and sim.
	AccelReason string `json:"accelReason,omitempty"`
	Version     string `json:"version,omitempty"`
	// Hypervisor is the hypervisor's version; VMs move live only between
	// hosts with the same.
	Hypervisor  string `json:"hypervisor,omitempty"`
	CPUs        int    `json:"cpus"`
	MemoryBytes Size   `json:"memoryBytes"`
	// Datastores the agent reports it can reach.
	Datastores []Ref `json:"datastores,omitempty"`
	// TunnelAddress is the host's address on the network joining the
	// hosts: the end of its switches' VXLAN tunnels.
	TunnelAddress string `json:"tunnelAddress,omitempty"`
	// NetworkGen is the version of the desired network the host last
	// realized, and Networks how each of its switches went.
	NetworkGen string         `json:"networkGen,omitempty"`
	Networks   []SwitchReport `json:"networks,omitempty"`
	// Uplinks are the host's interfaces its switches use, with their LLDP
	// neighbours; LLDP says why there are none when lldpd cannot run.
	Uplinks []HostUplink `json:"uplinks,omitempty"`
	LLDP    string       `json:"lldp,omitempty"`
	// FailedAt is when HA declared the host failed (its heartbeats stopped
	// for the cluster's failure detection time) and restarted its VMs
	// elsewhere; zero once it is back.
	FailedAt time.Time `json:"failedAt,omitzero"`
	// Certificate is the host's current certificate: the server accepts
	// no other for this host.
	Certificate *HostCertificate `json:"certificate,omitempty"`

	// Computed when read: vCPUs and memory of the host's powered-on VMs, and
	// the number of VMs registered on it.
	UsedCPUs   int  `json:"usedCpus"`
	UsedMemory Size `json:"usedMemoryBytes"`
	VMs        int  `json:"vms"`
}

// HostCertificate is what the server knows of the certificate a host
// authenticates with. The host renews it on its own before it expires;
// `vdc host replace` revokes it.
type HostCertificate struct {
	// Serial is the current certificate's serial number (hex); empty
	// while the host is revoked, until it joins again.
	Serial   string    `json:"serial,omitempty"`
	Issued   time.Time `json:"issued,omitzero"`
	NotAfter time.Time `json:"notAfter,omitzero"`
	// Previous is the serial the host renewed from. It is still accepted
	// until the host first uses the new certificate, so that a renewal
	// whose answer was lost can be tried again.
	Previous string `json:"previous,omitempty"`
	// Revoked is when `vdc host replace` revoked the host's certificate.
	Revoked time.Time `json:"revoked,omitzero"`
}

// Datastore is a directory that holds VM disks: shared by every host of its
// datacenter that can reach it (an NFS mount, or one directory on one
// machine), or local to one host.
type Datastore struct {
	Metadata ObjectMeta      `json:"metadata"`
	Spec     DatastoreSpec   `json:"spec"`
	Status   DatastoreStatus `json:"status"`
}

type DatastoreSpec struct {
	Datacenter  Ref    `json:"datacenter"`
	Path        string `json:"path"`
	Shared      bool   `json:"shared"`
	Host        Ref    `json:"host,omitempty"` // the one host of a local datastore
	Description string `json:"description,omitempty"`
}

type DatastoreStatus struct {
	CapacityBytes Size `json:"capacityBytes"`
	FreeBytes     Size `json:"freeBytes"`
	// ProvisionedBytes is the sum of the sizes of the disks on it (computed).
	ProvisionedBytes Size  `json:"provisionedBytes"`
	Hosts            []Ref `json:"hosts,omitempty"` // hosts that reach it
	// AllocatedBytes is what the VMs' disk files really take (computed);
	// OvercommitRatio is provisioned over capacity.
	AllocatedBytes  Size    `json:"allocatedBytes,omitempty"`
	OvercommitRatio float64 `json:"overcommitRatio,omitempty"`
	// Alarm is "warning" past 80 % used, "critical" past 95 %.
	Alarm string `json:"alarm,omitempty"`
}

// PortGroup is a network VMs' NICs attach to, defined once per datacenter
// and realized on every host.
type PortGroup struct {
	Metadata ObjectMeta      `json:"metadata"`
	Spec     PortGroupSpec   `json:"spec"`
	Status   PortGroupStatus `json:"status"`
}

type PortGroupSpec struct {
	Datacenter Ref `json:"datacenter"`
	// Switch is the distributed switch that carries the port group; none
	// makes it a NAT network (QEMU user-mode: outbound only, each VM on
	// its own).
	Switch Ref `json:"switch,omitzero"`
	// One of VNI, VLAN or Isolated, on a switch.
	VNI      int          `json:"vni,omitempty"`
	VLAN     int          `json:"vlan"`
	Isolated bool         `json:"isolated,omitempty"`
	Security PortSecurity `json:"security"`
	Shaping  Shaping      `json:"shaping"`
	// DHCP, when set, gives each NIC on the port group a fixed address
	// of the subnet, served by the host that runs the VM.
	DHCP        *PortGroupDHCP `json:"dhcp,omitempty"`
	Description string         `json:"description,omitempty"`
}

type PortGroupStatus struct {
	Type  string `json:"type"`  // nat, vxlan, vlan or isolated (computed)
	Ports int    `json:"ports"` // NICs attached (computed)
}

// PortGroupType says what kind of network a port group is.
func (o *PortGroup) Type() string {
	switch {
	case o.Spec.Switch.IsZero():
		return PortGroupNAT
	case o.Spec.VNI != 0:
		return PortGroupVXLAN
	case o.Spec.VLAN != 0:
		return PortGroupVLAN
	}
	return PortGroupIsolated
}

func (o *Datacenter) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Cluster) GetMeta() *ObjectMeta    { return &o.Metadata }
func (o *Host) GetMeta() *ObjectMeta       { return &o.Metadata }
func (o *Datastore) GetMeta() *ObjectMeta  { return &o.Metadata }
func (o *PortGroup) GetMeta() *ObjectMeta  { return &o.Metadata }
func (o *Datacenter) Kind() string         { return KindDatacenter }
func (o *Cluster) Kind() string            { return KindCluster }
func (o *Host) Kind() string               { return KindHost }
func (o *Datastore) Kind() string          { return KindDatastore }
func (o *PortGroup) Kind() string          { return KindPortGroup }
