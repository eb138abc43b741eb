package api

// The agent side of /api/v1/agent: what a host sends the server. These calls
// authenticate with the host's current client certificate, except join,
// which presents a join token.

// JoinRequest is the body of POST /api/v1/agent/join.
type JoinRequest struct {
	Token string `json:"token"`
	Name  string `json:"name"`
	// CSR is the host's PEM certificate signing request.
	CSR string `json:"csr"`
}

// JoinResponse gives the host its identity and certificate.
type JoinResponse struct {
	HostID      string `json:"hostId"`
	Certificate string `json:"certificate"` // PEM, signed by the CA
	CA          string `json:"ca"`          // PEM
}

// RenewRequest is the body of POST /api/v1/agent/renew: a host asks for a
// new certificate, authenticated by its current one.
type RenewRequest struct {
	// CSR is the PEM certificate signing request for the host's new key.
	CSR string `json:"csr"`
}

// RenewResponse is the host's new certificate. From the host's first call
// with it, its old certificate is refused.
type RenewResponse struct {
	Certificate string `json:"certificate"` // PEM, signed by the CA
	CA          string `json:"ca"`          // PEM
}

// Heartbeat is the body of POST /api/v1/agent/heartbeat, sent every few seconds.
type Heartbeat struct {
	Address  string `json:"address"`
	Hostname string `json:"hostname"`
	Driver   string `json:"driver"`
	Accel    string `json:"accel"`
	// AccelReason says why VMs do not run under KVM, when they could.
	AccelReason string `json:"accelReason,omitempty"`
	Version     string `json:"version"`
	// Hypervisor is the hypervisor's version ("QEMU 7.2.22").
	Hypervisor  string `json:"hypervisor,omitempty"`
	CPUs        int    `json:"cpus"`
	MemoryBytes Size   `json:"memoryBytes"`
	// VMs holds the VMs whose state changed since the last heartbeat the
	// server acknowledged, or every VM when Full is set (the first
	// heartbeat, after a failed one, and every half minute).
	VMs  []AgentVMState `json:"vms"`
	Full bool           `json:"full"`
	// VMsSeq is the host's state sequence when it listed VMs: a VM whose
	// state is newer was defined after the list was made, and its absence
	// from VMs means nothing.
	VMsSeq     uint64          `json:"vmsSeq"`
	Datastores []DatastoreSeen `json:"datastores,omitempty"`
	// Incoming lists the VMs whose copy this host has been receiving, by
	// a live migration, for a while: the server answers with the ones no
	// migration task waits for any more (DropIncoming).
	Incoming []string `json:"incoming,omitempty"`
	// TunnelAddress is the host's end of its switches' VXLAN tunnels.
	TunnelAddress string `json:"tunnelAddress,omitempty"`
	// NetworkGen is the desired network's version the host realized
	// (HostNetwork.Gen), and Networks how each switch went.
	NetworkGen string         `json:"networkGen,omitempty"`
	Networks   []SwitchReport `json:"networks,omitempty"`
	// Uplinks are the host's interfaces its switches use, with their LLDP
	// neighbours; LLDP says why there are none when lldpd cannot run.
	Uplinks []HostUplink `json:"uplinks,omitempty"`
	LLDP    string       `json:"lldp,omitempty"`
	// HAGen is the version of the HA settings the host has (HostHA.Gen).
	HAGen string `json:"haGen,omitempty"`
	// Fenced says what the host did to its VMs while it was isolated.
	Fenced []FenceRecord `json:"fenced,omitempty"`
}

// AgentVMState is what a host knows of one of its VMs.
type AgentVMState struct {
	ID         string `json:"id"`
	PowerState string `json:"powerState"`
	// Seq increases with every change of the VM's state on the host.
	Seq    uint64     `json:"seq"`
	Reason string     `json:"reason,omitempty"`
	Guest  *GuestInfo `json:"guest,omitempty"`
	VNC    string     `json:"vnc,omitempty"`
	// Lease is the lease file the running VM holds (HA's guard against a
	// second copy), if any.
	Lease string `json:"lease,omitempty"`
	// Disks are measured on full heartbeats and on define.
	Disks []DiskStatus `json:"disks,omitempty"`
}

// DatastoreSeen reports a datastore's space as one host sees it.
type DatastoreSeen struct {
	ID            string `json:"id"`
	Reachable     bool   `json:"reachable"`
	CapacityBytes Size   `json:"capacityBytes"`
	FreeBytes     Size   `json:"freeBytes"`
	Error         string `json:"error,omitempty"`
}

// HeartbeatResponse tells the host what to look after.
type HeartbeatResponse struct {
	IntervalSeconds int                `json:"intervalSeconds"`
	Datastores      []DatastoreToCheck `json:"datastores"`
	// DropIncoming lists copies of migrating VMs to throw away: their
	// migration ended while the server could not reach this host.
	DropIncoming []string `json:"dropIncoming,omitempty"`
	// HA is the host's HA settings, when they differ from HAGen.
	HA *HostHA `json:"ha,omitempty"`
	// Drop lists VMs the host still has that now run on another host (HA
	// restarted them while it was cut off): stop them and forget them,
	// leaving their disks.
	Drop []string `json:"drop,omitempty"`
	// RenewCertificate asks the host to renew its certificate now: it
	// lives longer than the server issues them today (one from before
	// certificates were short-lived, or the server's --host-cert-ttl went down).
	RenewCertificate bool `json:"renewCertificate,omitempty"`
	// SendFull asks for every VM's state in the next heartbeat, at once:
	// the server showed the host disconnected (its VMs unknown), and a
	// host that hung does not know it missed anything.
	SendFull bool `json:"sendFull,omitempty"`
	// Network is the host's desired network, when it differs from the
	// NetworkGen the host reported.
	Network *HostNetwork `json:"network,omitempty"`
}

type DatastoreToCheck struct {
	ID   string `json:"id"`
	Path string `json:"path"`
}
