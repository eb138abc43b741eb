package api

import "time"

// High availability (vSphere HA, Proxmox's HA manager): a cluster with HA
// on restarts the VMs of a host that dies on the other hosts, and resets
// guests whose agent stops answering.

// Isolation responses: what a host that lost both the server and its
// isolation addresses does with its protected VMs.
const (
	IsolationPowerOff     = "power-off"
	IsolationShutdown     = "shutdown"
	IsolationLeaveRunning = "leave-running"
)

// Admission control policies.
const (
	AdmissionOff          = "off"
	AdmissionHostFailures = "host-failures"
	AdmissionPercentage   = "percentage"
)

// Restart conditions: what the restarts of one priority wait for before
// those of the next priority begin.
const (
	RestartWhenPoweredOn  = "powered-on"
	RestartWhenGuestReady = "guest-ready"
)

// HA restart priorities of a VM. Disabled VMs are not restarted.
const (
	HAPriorityHigh     = "high"
	HAPriorityMedium   = "medium"
	HAPriorityLow      = "low"
	HAPriorityDisabled = "disabled"
)

// Defaults of ClusterHA, applied when HA is turned on.
const (
	DefaultHAFailureDetection     = 10 * time.Second
	DefaultHARestartTimeout       = 120 * time.Second
	DefaultVMMonitorInterval      = 30 * time.Second
	DefaultVMMonitorMinUptime     = 120 * time.Second
	DefaultVMMonitorMaxResets     = 3
	DefaultVMMonitorResetWindow   = time.Hour
	MinHAFailureDetection         = 2 * time.Second
	DefaultHAAdmissionHostFailure = 1
)

// ClusterHA is a cluster's HA settings.
type ClusterHA struct {
	Enabled bool `json:"enabled"`
	// FailureDetectionSeconds: a host of the cluster silent this long is
	// declared failed and its protected VMs restart elsewhere.
	FailureDetectionSeconds int `json:"failureDetectionSeconds,omitempty"`
	// IsolationResponse: what a host that lost the server and its isolation
	// addresses does with its protected VMs, before the server restarts
	// them elsewhere: power-off, shutdown or leave-running.
	IsolationResponse string `json:"isolationResponse,omitempty"`
	// IsolationAddresses are what a host pings to tell its own isolation
	// from a lost server; default: its default gateway.
	IsolationAddresses []string    `json:"isolationAddresses,omitempty"`
	AdmissionControl   HAAdmission `json:"admissionControl"`
	// RestartCondition: the restarts of one priority wait until those of
	// the priority above are powered-on or guest-ready, at most
	// RestartTimeoutSeconds.
	RestartCondition      string       `json:"restartCondition,omitempty"`
	RestartTimeoutSeconds int          `json:"restartTimeoutSeconds,omitempty"`
	VMMonitoring          VMMonitoring `json:"vmMonitoring"`
}

// HAAdmission keeps room in reserve for restarts: a power-on that would
// leave too little is refused.
type HAAdmission struct {
	Policy string `json:"policy,omitempty"` // off, host-failures, percentage
	// HostFailures the cluster must be able to tolerate (host-failures).
	HostFailures int `json:"hostFailures,omitempty"`
	// CPUPercent and MemoryPercent of the cluster kept free (percentage).
	CPUPercent    int `json:"cpuPercent,omitempty"`
	MemoryPercent int `json:"memoryPercent,omitempty"`
}

// VMMonitoring resets a powered-on VM whose guest agent stopped answering
// for FailureIntervalSeconds, once it has run MinUptimeSeconds, at most
// MaxResets times in ResetWindowSeconds.
type VMMonitoring struct {
	Enabled                bool `json:"enabled"`
	FailureIntervalSeconds int  `json:"failureIntervalSeconds,omitempty"`
	MinUptimeSeconds       int  `json:"minUptimeSeconds,omitempty"`
	MaxResets              int  `json:"maxResets,omitempty"`
	ResetWindowSeconds     int  `json:"resetWindowSeconds,omitempty"`
}

// FailureDetection is the detection time, with the default.
func (h *ClusterHA) FailureDetection() time.Duration {
	if h == nil || h.FailureDetectionSeconds <= 0 {
		return DefaultHAFailureDetection
	}
	return time.Duration(h.FailureDetectionSeconds) * time.Second
}

// On reports whether HA protects the cluster's VMs.
func (h *ClusterHA) On() bool { return h != nil && h.Enabled }

// ClusterHAUpdate changes a cluster's HA settings; absent fields stay.
type ClusterHAUpdate struct {
	Enabled                 *bool     `json:"enabled,omitempty"`
	FailureDetectionSeconds *int      `json:"failureDetectionSeconds,omitempty"`
	IsolationResponse       *string   `json:"isolationResponse,omitempty"`
	IsolationAddresses      *[]string `json:"isolationAddresses,omitempty"`
	AdmissionPolicy         *string   `json:"admissionPolicy,omitempty"`
	AdmissionHostFailures   *int      `json:"admissionHostFailures,omitempty"`
	AdmissionCPUPercent     *int      `json:"admissionCpuPercent,omitempty"`
	AdmissionMemoryPercent  *int      `json:"admissionMemoryPercent,omitempty"`
	RestartCondition        *string   `json:"restartCondition,omitempty"`
	RestartTimeoutSeconds   *int      `json:"restartTimeoutSeconds,omitempty"`
	VMMonitoring            *bool     `json:"vmMonitoring,omitempty"`
	VMFailureIntervalSecs   *int      `json:"vmFailureIntervalSeconds,omitempty"`
	VMMinUptimeSeconds      *int      `json:"vmMinUptimeSeconds,omitempty"`
	VMMaxResets             *int      `json:"vmMaxResets,omitempty"`
	VMResetWindowSeconds    *int      `json:"vmResetWindowSeconds,omitempty"`
}

// HostHA is what a host of an HA cluster needs to protect its VMs on its
// own when it loses the server: sent in heartbeat answers when it changed.
type HostHA struct {
	// Gen identifies this version; the host sends it back (Heartbeat.HAGen).
	Gen                     string   `json:"gen"`
	Enabled                 bool     `json:"enabled"`
	FailureDetectionSeconds int      `json:"failureDetectionSeconds"`
	IsolationResponse       string   `json:"isolationResponse"`
	IsolationAddresses      []string `json:"isolationAddresses,omitempty"`
	// Protected lists the host's VMs that HA restarts elsewhere: the ones
	// the isolation response applies to, each with the lease its running
	// copy must hold.
	Protected []ProtectedVM `json:"protected,omitempty"`
}

// ProtectedVM is one VM HA protects on a host.
type ProtectedVM struct {
	ID    string `json:"id"`
	Lease string `json:"lease,omitempty"`
}

// FenceRecord is what a host did to one of its VMs on its own because it
// was isolated, reported once it reaches the server again.
type FenceRecord struct {
	VM     string    `json:"vm"`     // ID
	Action string    `json:"action"` // power-off, shutdown
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

// HAPriorityOf is a VM's restart priority, with the default.
func HAPriorityOf(vm *VM) string {
	if vm.Spec.HAPriority == "" {
		return HAPriorityMedium
	}
	return vm.Spec.HAPriority
}

// HARestartResult is the result of a vm.ha-restart task.
type HARestartResult struct {
	From    Ref    `json:"from"`
	To      Ref    `json:"to"`
	Reason  string `json:"reason"`
	Attempt int    `json:"attempt"`
}

// HAFailoverResult is the result of a host.failover task.
type HAFailoverResult struct {
	Restarted int `json:"restarted"`
	// Failed lists the VMs HA set out to restart and did not (it gave up,
	// or the host came back first), each with the last reason.
	Failed  []string `json:"failed,omitempty"`
	Outcome string   `json:"outcome"` // done, the host came back, HA was turned off...
}

// VMResetResult is the result of a reset by VM monitoring: why, and what
// the console showed before it.
type VMResetResult struct {
	Reason     string `json:"reason"`
	ConsoleLog string `json:"consoleLog,omitempty"`
}
