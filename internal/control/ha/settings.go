package ha

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"sort"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
)

// ValidateHA applies a change to a cluster's HA settings (cur, nil when
// the cluster has none yet), filling in the defaults when HA is turned
// on, and checks the result.
func (s *Service) ValidateHA(cur *api.ClusterHA, u *api.ClusterHAUpdate) (*api.ClusterHA, error) {
	ha := DefaultHA()
	if cur != nil {
		ha = *cur
		ha.IsolationAddresses = slices.Clone(cur.IsolationAddresses)
	}
	apply(&ha, u)
	if ha.AdmissionControl.Policy == api.AdmissionHostFailures && ha.AdmissionControl.HostFailures == 0 {
		ha.AdmissionControl.HostFailures = api.DefaultHAAdmissionHostFailure
	}
	minDetect := max(api.MinHAFailureDetection, s.d.HeartbeatInterval*3/2)
	if err := check(&ha, minDetect); err != nil {
		return nil, err
	}
	return &ha, nil
}

// apply sets what the update sets.
func apply(ha *api.ClusterHA, u *api.ClusterHAUpdate) {
	set := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	setS := func(dst *string, src *string) {
		if src != nil {
			*dst = *src
		}
	}
	if u.Enabled != nil {
		ha.Enabled = *u.Enabled
	}
	set(&ha.FailureDetectionSeconds, u.FailureDetectionSeconds)
	setS(&ha.IsolationResponse, u.IsolationResponse)
	if u.IsolationAddresses != nil {
		ha.IsolationAddresses = *u.IsolationAddresses
	}
	setS(&ha.AdmissionControl.Policy, u.AdmissionPolicy)
	set(&ha.AdmissionControl.HostFailures, u.AdmissionHostFailures)
	set(&ha.AdmissionControl.CPUPercent, u.AdmissionCPUPercent)
	set(&ha.AdmissionControl.MemoryPercent, u.AdmissionMemoryPercent)
	setS(&ha.RestartCondition, u.RestartCondition)
	set(&ha.RestartTimeoutSeconds, u.RestartTimeoutSeconds)
	if u.VMMonitoring != nil {
		ha.VMMonitoring.Enabled = *u.VMMonitoring
	}
	set(&ha.VMMonitoring.FailureIntervalSeconds, u.VMFailureIntervalSecs)
	set(&ha.VMMonitoring.MinUptimeSeconds, u.VMMinUptimeSeconds)
	set(&ha.VMMonitoring.MaxResets, u.VMMaxResets)
	set(&ha.VMMonitoring.ResetWindowSeconds, u.VMResetWindowSeconds)
}

// check says what is wrong with HA settings, if anything.
func check(ha *api.ClusterHA, minDetect time.Duration) error {
	bad := func(format string, args ...any) error {
		return api.Errorf(api.ErrInvalid, "HA: "+format, args...)
	}
	detect := time.Duration(ha.FailureDetectionSeconds) * time.Second
	ac, vm := ha.AdmissionControl, ha.VMMonitoring
	switch {
	case detect < minDetect || detect > time.Hour:
		return bad("failure detection time must be between %s (1.5 heartbeat intervals of this server) and 1h, got %s", minDetect, detect)
	case !slices.Contains([]string{api.IsolationPowerOff, api.IsolationShutdown, api.IsolationLeaveRunning}, ha.IsolationResponse):
		return bad("isolation response must be power-off, shutdown or leave-running, got %q", ha.IsolationResponse)
	case len(ha.IsolationAddresses) > 8:
		return bad("at most 8 isolation addresses, got %d", len(ha.IsolationAddresses))
	case !slices.Contains([]string{api.AdmissionOff, api.AdmissionHostFailures, api.AdmissionPercentage}, ac.Policy):
		return bad("admission control must be off, host-failures or percentage, got %q", ac.Policy)
	case ac.HostFailures < 0 || ac.HostFailures > 31:
		return bad("admission control tolerates 1 to 31 host failures, got %d", ac.HostFailures)
	case ac.CPUPercent < 0 || ac.CPUPercent > 99 || ac.MemoryPercent < 0 || ac.MemoryPercent > 99:
		return bad("admission control reserves 0 to 99 %% of CPU and memory, got %d %% and %d %%", ac.CPUPercent, ac.MemoryPercent)
	case ac.Policy == api.AdmissionPercentage && ac.CPUPercent == 0 && ac.MemoryPercent == 0:
		return bad("admission control by percentage needs a CPU or memory percentage to reserve")
	case !slices.Contains([]string{api.RestartWhenPoweredOn, api.RestartWhenGuestReady}, ha.RestartCondition):
		return bad("restart condition must be powered-on or guest-ready, got %q", ha.RestartCondition)
	case ha.RestartTimeoutSeconds < 1 || ha.RestartTimeoutSeconds > 3600:
		return bad("restart timeout must be 1 to 3600 seconds, got %d", ha.RestartTimeoutSeconds)
	case vm.FailureIntervalSeconds < 10 || vm.FailureIntervalSeconds > 3600:
		return bad("VM monitoring failure interval must be 10 to 3600 seconds, got %d", vm.FailureIntervalSeconds)
	case vm.MinUptimeSeconds < 0 || vm.MinUptimeSeconds > 86400:
		return bad("VM monitoring minimum uptime must be 0 to 86400 seconds, got %d", vm.MinUptimeSeconds)
	case vm.MaxResets < 1 || vm.MaxResets > 100:
		return bad("VM monitoring allows 1 to 100 resets per window, got %d", vm.MaxResets)
	case vm.ResetWindowSeconds < 60 || vm.ResetWindowSeconds > 7*86400:
		return bad("VM monitoring reset window must be 60 s to 7 days, got %d s", vm.ResetWindowSeconds)
	}
	for _, a := range ha.IsolationAddresses {
		if net.ParseIP(a) == nil && api.ValidateName("isolation address", a) != nil {
			return bad("isolation address %q is neither an IP address nor a host name", a)
		}
	}
	return nil
}

// DefaultHA is a cluster's HA settings before anyone changed them.
func DefaultHA() api.ClusterHA {
	return api.ClusterHA{
		FailureDetectionSeconds: int(api.DefaultHAFailureDetection / time.Second),
		IsolationResponse:       api.IsolationPowerOff,
		AdmissionControl:        api.HAAdmission{Policy: api.AdmissionOff},
		RestartCondition:        api.RestartWhenPoweredOn,
		RestartTimeoutSeconds:   int(api.DefaultHARestartTimeout / time.Second),
		VMMonitoring: api.VMMonitoring{
			FailureIntervalSeconds: int(api.DefaultVMMonitorInterval / time.Second),
			MinUptimeSeconds:       int(api.DefaultVMMonitorMinUptime / time.Second),
			MaxResets:              api.DefaultVMMonitorMaxResets,
			ResetWindowSeconds:     int(api.DefaultVMMonitorResetWindow / time.Second),
		},
	}
}

// ValidateHAPriority checks an HA priority a request gives a VM.
func ValidateHAPriority(p string) error {
	switch p {
	case "", api.HAPriorityHigh, api.HAPriorityMedium, api.HAPriorityLow, api.HAPriorityDisabled:
		return nil
	}
	return api.Errorf(api.ErrInvalid, "HA priority must be high, medium, low or disabled, got %q", p)
}

// ValidateHAPriority is the package's ValidateHAPriority, for those that
// hold the service behind an interface.
func (s *Service) ValidateHAPriority(p string) error { return ValidateHAPriority(p) }

// HostSettings is what a host needs to protect its VMs on its own; Gen is
// empty when the host's cluster has no HA.
func (s *Service) HostSettings(h *api.Host) *api.HostHA {
	cl, _ := state.Get[*api.Cluster](s.d.State, h.Spec.Cluster.ID)
	if cl == nil || !cl.Spec.HA.On() {
		return &api.HostHA{}
	}
	ha := cl.Spec.HA
	p := &api.HostHA{Enabled: true, FailureDetectionSeconds: ha.FailureDetectionSeconds,
		IsolationResponse: ha.IsolationResponse, IsolationAddresses: ha.IsolationAddresses}
	for _, vm := range s.d.Inv.VMsOn(h.Metadata.ID) {
		if inventory.HAProtected(cl, vm) {
			p.Protected = append(p.Protected, api.ProtectedVM{ID: vm.Metadata.ID, Lease: s.d.Inv.VMLease(vm)})
		}
	}
	sort.Slice(p.Protected, func(i, j int) bool { return p.Protected[i].ID < p.Protected[j].ID })
	b, _ := json.Marshal(p)
	f := fnv.New64a()
	f.Write(b)
	p.Gen = fmt.Sprintf("%016x", f.Sum64())
	return p
}
