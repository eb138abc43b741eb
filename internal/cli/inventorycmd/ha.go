package inventorycmd

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// haFlags adds a cluster's HA settings to cluster create and update; the
// returned func builds the change from the flags given (nil: none).
func haFlags(cmd *cobra.Command) func() (*api.ClusterHAUpdate, error) {
	fl := cmd.Flags()
	on := fl.String("ha", "", "HA: on restarts the VMs of failed hosts elsewhere (on|off)")
	detect := fl.Duration("ha-failure-detection", api.DefaultHAFailureDetection, "HA: a host silent this long is failed")
	isolation := fl.String("ha-isolation-response", api.IsolationPowerOff, "HA: what an isolated host does with its VMs: power-off, shutdown or leave-running")
	addrs := fl.StringArray("ha-isolation-address", nil, "HA: address a host pings to tell its isolation from a lost server (repeatable; default: its gateway)")
	admission := fl.String("ha-admission-control", api.AdmissionOff, "HA: keep room for restarts: off, host-failures or percentage")
	failures := fl.Int("ha-host-failures", api.DefaultHAAdmissionHostFailure, "HA: host failures to tolerate (admission control host-failures)")
	cpuPct := fl.Int("ha-reserve-cpu", 0, "HA: percent of CPU kept free (admission control percentage)")
	memPct := fl.Int("ha-reserve-memory", 0, "HA: percent of memory kept free (admission control percentage)")
	cond := fl.String("ha-restart-condition", api.RestartWhenPoweredOn, "HA: the next priority's restarts wait until the VMs above are powered-on or guest-ready")
	restartTimeout := fl.Duration("ha-restart-timeout", api.DefaultHARestartTimeout, "HA: the longest wait for that condition")
	mon := fl.String("ha-vm-monitoring", "", "HA: reset VMs whose guest agent stops answering (on|off)")
	interval := fl.Duration("ha-vm-failure-interval", api.DefaultVMMonitorInterval, "HA VM monitoring: guest agent silence before a reset")
	uptime := fl.Duration("ha-vm-min-uptime", api.DefaultVMMonitorMinUptime, "HA VM monitoring: no reset before the VM has run this long")
	resets := fl.Int("ha-vm-max-resets", api.DefaultVMMonitorMaxResets, "HA VM monitoring: at most this many resets per window")
	window := fl.Duration("ha-vm-reset-window", api.DefaultVMMonitorResetWindow, "HA VM monitoring: the window of --ha-vm-max-resets")
	return func() (*api.ClusterHAUpdate, error) {
		u := &api.ClusterHAUpdate{}
		any := false
		onOff := func(flag, v string) (*bool, error) {
			if !fl.Changed(flag) {
				return nil, nil
			}
			any = true
			b, err := cmdutil.ParseOnOff(flag, v)
			if err != nil {
				return nil, err
			}
			return &b, nil
		}
		secs := func(flag string, d time.Duration) *int {
			if !fl.Changed(flag) {
				return nil
			}
			any = true
			return ptrTo(int(d / time.Second))
		}
		str := func(flag, v string) *string {
			if !fl.Changed(flag) {
				return nil
			}
			any = true
			return &v
		}
		num := func(flag string, v int) *int {
			if !fl.Changed(flag) {
				return nil
			}
			any = true
			return &v
		}
		var err error
		if u.Enabled, err = onOff("ha", *on); err != nil {
			return nil, err
		}
		if u.VMMonitoring, err = onOff("ha-vm-monitoring", *mon); err != nil {
			return nil, err
		}
		u.FailureDetectionSeconds = secs("ha-failure-detection", *detect)
		u.IsolationResponse = str("ha-isolation-response", *isolation)
		if fl.Changed("ha-isolation-address") {
			any = true
			u.IsolationAddresses = addrs
		}
		u.AdmissionPolicy = str("ha-admission-control", *admission)
		u.AdmissionHostFailures = num("ha-host-failures", *failures)
		u.AdmissionCPUPercent = num("ha-reserve-cpu", *cpuPct)
		u.AdmissionMemoryPercent = num("ha-reserve-memory", *memPct)
		u.RestartCondition = str("ha-restart-condition", *cond)
		u.RestartTimeoutSeconds = secs("ha-restart-timeout", *restartTimeout)
		u.VMFailureIntervalSecs = secs("ha-vm-failure-interval", *interval)
		u.VMMinUptimeSeconds = secs("ha-vm-min-uptime", *uptime)
		u.VMMaxResets = num("ha-vm-max-resets", *resets)
		u.VMResetWindowSeconds = secs("ha-vm-reset-window", *window)
		if !any {
			return nil, nil
		}
		return u, nil
	}
}

func ptrTo[T any](v T) *T { return &v }

// haSummary is a cluster's HA in a few words, for lists.
func haSummary(ha *api.ClusterHA) string {
	if !ha.On() {
		return "off"
	}
	s := fmt.Sprintf("on, %ds", ha.FailureDetectionSeconds)
	if ha.VMMonitoring.Enabled {
		s += ", vm monitoring"
	}
	return s
}

// haInfo adds a cluster's HA settings to its info.
func haInfo(v *cmdutil.InfoView, ha *api.ClusterHA) {
	if !ha.On() {
		v.Add("HA", "off")
		return
	}
	v.Add("HA", "on")
	v.Add("  Failure detection", fmt.Sprintf("%ds", ha.FailureDetectionSeconds))
	addrs := "the host's default gateway"
	if len(ha.IsolationAddresses) > 0 {
		addrs = strings.Join(ha.IsolationAddresses, ", ")
	}
	v.Add("  Isolation response", ha.IsolationResponse+" (isolation addresses: "+addrs+")")
	ac := ha.AdmissionControl
	switch ac.Policy {
	case api.AdmissionHostFailures:
		v.Add("  Admission control", fmt.Sprintf("tolerate %d host failure(s)", ac.HostFailures))
	case api.AdmissionPercentage:
		v.Add("  Admission control", fmt.Sprintf("keep %d%% CPU and %d%% memory free", ac.CPUPercent, ac.MemoryPercent))
	default:
		v.Add("  Admission control", "off")
	}
	v.Add("  Restart order", fmt.Sprintf("by priority; the next waits until %s (at most %ds)", ha.RestartCondition, ha.RestartTimeoutSeconds))
	m := ha.VMMonitoring
	if m.Enabled {
		v.Add("  VM monitoring", fmt.Sprintf("reset after %ds of guest agent silence, once up %ds, at most %d per %s",
			m.FailureIntervalSeconds, m.MinUptimeSeconds, m.MaxResets, time.Duration(m.ResetWindowSeconds)*time.Second))
	} else {
		v.Add("  VM monitoring", "off")
	}
}
