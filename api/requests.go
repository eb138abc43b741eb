package api

// Bodies of the inventory calls. In updates (PATCH), absent fields stay as
// they are.

type DatacenterCreateRequest struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type DatacenterUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type ClusterCreateRequest struct {
	Name        string            `json:"name"`
	Datacenter  string            `json:"datacenter,omitempty"` // default: the only datacenter
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Default 4.0 and 1.0.
	CPUOvercommit    float64 `json:"cpuOvercommit,omitempty"`
	MemoryOvercommit float64 `json:"memoryOvercommit,omitempty"`
	// HA settings (default: off).
	HA *ClusterHAUpdate `json:"ha,omitempty"`
}

type ClusterUpdateRequest struct {
	Name             *string           `json:"name,omitempty"`
	Description      *string           `json:"description,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	CPUOvercommit    *float64          `json:"cpuOvercommit,omitempty"`
	MemoryOvercommit *float64          `json:"memoryOvercommit,omitempty"`
	HA               *ClusterHAUpdate  `json:"ha,omitempty"`
}

type DatastoreCreateRequest struct {
	Name       string `json:"name"`
	Datacenter string `json:"datacenter,omitempty"`
	Path       string `json:"path"`
	// Host makes the datastore local to one host; without it the datastore
	// is shared by every host of the datacenter that reaches the path.
	Host        string            `json:"host,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

type DatastoreUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// PortGroupCreateRequest makes a port group: on a switch, one of VNI,
// VLAN or Isolated; without a switch, a NAT network.
type PortGroupCreateRequest struct {
	Name        string            `json:"name"`
	Datacenter  string            `json:"datacenter,omitempty"`
	Switch      string            `json:"switch,omitempty"`
	VNI         int               `json:"vni,omitempty"`
	VLAN        int               `json:"vlan,omitempty"`
	Isolated    bool              `json:"isolated,omitempty"`
	Security    *PortSecurity     `json:"security,omitempty"`
	Shaping     *Shaping          `json:"shaping,omitempty"`
	DHCP        *PortGroupDHCP    `json:"dhcp,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// PortGroupUpdateRequest changes a port group; its switch and kind stay,
// its VNI or VLAN may change (the hosts follow).
type PortGroupUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	VNI         *int              `json:"vni,omitempty"`
	VLAN        *int              `json:"vlan,omitempty"`
	Security    SecurityUpdate    `json:"security,omitzero"`
	Shaping     ShapingUpdate     `json:"shaping,omitzero"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// SecurityUpdate changes the port security settings given.
type SecurityUpdate struct {
	AllowMACChanges      *bool `json:"allowMacChanges,omitempty"`
	AllowForgedTransmits *bool `json:"allowForgedTransmits,omitempty"`
	AllowPromiscuous     *bool `json:"allowPromiscuous,omitempty"`
}

// ShapingUpdate sets (In, Out) or removes (NoIn, NoOut) a direction's
// shaping; what it does not name stays.
type ShapingUpdate struct {
	In    *TrafficShape `json:"in,omitempty"`
	Out   *TrafficShape `json:"out,omitempty"`
	NoIn  bool          `json:"noIn,omitempty"`
	NoOut bool          `json:"noOut,omitempty"`
}

type HostUpdateRequest struct {
	Name    *string           `json:"name,omitempty"`
	Cluster *string           `json:"cluster,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
}

// Maintenance actions for POST /api/v1/hosts/{host}/maintenance.
const (
	MaintenanceEnter = "enter"
	MaintenanceExit  = "exit"
)

type MaintenanceRequest struct {
	Action string `json:"action"`
}
