package server

import (
	"context"
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
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/scheduler"
	"github.com/vdc-project/vdc/internal/store"
)

// HA (vSphere HA, Proxmox's HA manager): the leader declares a host of an
// HA cluster failed once it has been silent for the cluster's failure
// detection time, and a host.failover task restarts its protected VMs on
// the other hosts, highest priority first, each as a vm.ha-restart task.
// The hosts do their part on their own (internal/agent/ha.go): an isolated
// host stops its protected VMs before the detection time is up, and a VM's
// lease keeps a second copy from starting whatever the timing.

const (
	ownerHA = "ha"
)

// haMaxAttempts is how many times HA tries to restart a VM (vSphere's
// das.maxvmrestartcount is 5 too); haRetryDelay the wait before the
// first retry, doubled each time.
const (
	haMaxAttempts = 5
	haRetryDelay  = 5 * time.Second
)

// validateHA applies a change to a cluster's HA settings, filling in the
// defaults when HA is turned on, and checks the result.
func (s *Server) validateHA(cur *api.ClusterHA, u *api.ClusterHAUpdate) (*api.ClusterHA, error) {
	ha := defaultHA()
	if cur != nil {
		ha = *cur
		ha.IsolationAddresses = slices.Clone(cur.IsolationAddresses)
	}
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

	if ha.AdmissionControl.Policy == api.AdmissionHostFailures && ha.AdmissionControl.HostFailures == 0 {
		ha.AdmissionControl.HostFailures = api.DefaultHAAdmissionHostFailure
	}

	bad := func(format string, args ...any) (*api.ClusterHA, error) {
		return nil, api.Errorf(api.ErrInvalid, "HA: "+format, args...)
	}
	detect := time.Duration(ha.FailureDetectionSeconds) * time.Second
	minDetect := max(api.MinHAFailureDetection, s.cfg.HeartbeatInterval*3/2)
	switch {
	case detect < minDetect || detect > time.Hour:
		return bad("failure detection time must be between %s (1.5 heartbeat intervals of this server) and 1h, got %s", minDetect, detect)
	case !slices.Contains([]string{api.IsolationPowerOff, api.IsolationShutdown, api.IsolationLeaveRunning}, ha.IsolationResponse):
		return bad("isolation response must be power-off, shutdown or leave-running, got %q", ha.IsolationResponse)
	case len(ha.IsolationAddresses) > 8:
		return bad("at most 8 isolation addresses, got %d", len(ha.IsolationAddresses))
	case !slices.Contains([]string{api.AdmissionOff, api.AdmissionHostFailures, api.AdmissionPercentage}, ha.AdmissionControl.Policy):
		return bad("admission control must be off, host-failures or percentage, got %q", ha.AdmissionControl.Policy)
	case ha.AdmissionControl.HostFailures < 0 || ha.AdmissionControl.HostFailures > 31:
		return bad("admission control tolerates 1 to 31 host failures, got %d", ha.AdmissionControl.HostFailures)
	case ha.AdmissionControl.CPUPercent < 0 || ha.AdmissionControl.CPUPercent > 99 || ha.AdmissionControl.MemoryPercent < 0 || ha.AdmissionControl.MemoryPercent > 99:
		return bad("admission control reserves 0 to 99 %% of CPU and memory, got %d %% and %d %%", ha.AdmissionControl.CPUPercent, ha.AdmissionControl.MemoryPercent)
	case ha.AdmissionControl.Policy == api.AdmissionPercentage && ha.AdmissionControl.CPUPercent == 0 && ha.AdmissionControl.MemoryPercent == 0:
		return bad("admission control by percentage needs a CPU or memory percentage to reserve")
	case !slices.Contains([]string{api.RestartWhenPoweredOn, api.RestartWhenGuestReady}, ha.RestartCondition):
		return bad("restart condition must be powered-on or guest-ready, got %q", ha.RestartCondition)
	case ha.RestartTimeoutSeconds < 1 || ha.RestartTimeoutSeconds > 3600:
		return bad("restart timeout must be 1 to 3600 seconds, got %d", ha.RestartTimeoutSeconds)
	case ha.VMMonitoring.FailureIntervalSeconds < 10 || ha.VMMonitoring.FailureIntervalSeconds > 3600:
		return bad("VM monitoring failure interval must be 10 to 3600 seconds, got %d", ha.VMMonitoring.FailureIntervalSeconds)
	case ha.VMMonitoring.MinUptimeSeconds < 0 || ha.VMMonitoring.MinUptimeSeconds > 86400:
		return bad("VM monitoring minimum uptime must be 0 to 86400 seconds, got %d", ha.VMMonitoring.MinUptimeSeconds)
	case ha.VMMonitoring.MaxResets < 1 || ha.VMMonitoring.MaxResets > 100:
		return bad("VM monitoring allows 1 to 100 resets per window, got %d", ha.VMMonitoring.MaxResets)
	case ha.VMMonitoring.ResetWindowSeconds < 60 || ha.VMMonitoring.ResetWindowSeconds > 7*86400:
		return bad("VM monitoring reset window must be 60 s to 7 days, got %d s", ha.VMMonitoring.ResetWindowSeconds)
	}
	for _, a := range ha.IsolationAddresses {
		if net.ParseIP(a) == nil && api.ValidateName("isolation address", a) != nil {
			return bad("isolation address %q is neither an IP address nor a host name", a)
		}
	}
	return &ha, nil
}

// defaultHA is a cluster's HA settings before anyone changed them.
func defaultHA() api.ClusterHA {
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

func validateHAPriority(p string) error {
	switch p {
	case "", api.HAPriorityHigh, api.HAPriorityMedium, api.HAPriorityLow, api.HAPriorityDisabled:
		return nil
	}
	return api.Errorf(api.ErrInvalid, "HA priority must be high, medium, low or disabled, got %q", p)
}

// hostHA is what a host needs to protect its VMs on its own; Gen is empty
// when the host's cluster has no HA.
func (s *Server) hostHA(h *api.Host) *api.HostHA {
	co, _ := s.cache.Get(api.KindCluster, h.Spec.Cluster.ID)
	cl, _ := co.(*api.Cluster)
	if cl == nil || !cl.Spec.HA.On() {
		return &api.HostHA{}
	}
	ha := cl.Spec.HA
	p := &api.HostHA{Enabled: true, FailureDetectionSeconds: ha.FailureDetectionSeconds,
		IsolationResponse: ha.IsolationResponse, IsolationAddresses: ha.IsolationAddresses}
	for _, vm := range s.inv.VMsOn(h.Metadata.ID) {
		if inventory.HAProtected(cl, vm) {
			p.Protected = append(p.Protected, api.ProtectedVM{ID: vm.Metadata.ID, Lease: s.inv.VMLease(vm)})
		}
	}
	sort.Slice(p.Protected, func(i, j int) bool { return p.Protected[i].ID < p.Protected[j].ID })
	b, _ := json.Marshal(p)
	f := fnv.New64a()
	f.Write(b)
	p.Gen = fmt.Sprintf("%016x", f.Sum64())
	return p
}

// busyVMs are the VMs some unfinished task works on.
func (s *Server) busyVMs() map[string]bool {
	busy := map[string]bool{}
	s.cache.Each(api.KindTask, func(o api.Object) {
		if t := o.(*api.Task); t.Target.Kind == api.KindVM && !api.TaskDone(t.State) {
			busy[t.Target.ID] = true
		}
	})
	return busy
}

// strays picks, of the VMs a host reports, the ones that now belong to
// another host (HA restarted them there while this one was cut off): the
// host must stop and forget its copy.
func (s *Server) strays(h *api.Host, reported []api.AgentVMState) []string {
	var out []string
	var busy map[string]bool
	for _, st := range reported {
		o, ok := s.cache.Get(api.KindVM, st.ID)
		if !ok || o.(*api.VM).Spec.Host.ID == h.Metadata.ID {
			continue
		}
		if busy == nil {
			busy = s.busyVMs()
		}
		if busy[st.ID] { // a migration still needs the copy
			continue
		}
		s.log.Warn("host still has a VM that runs on another host now; dropping its copy", "host", h.Metadata.Name, "vm", o.GetMeta().Name)
		out = append(out, st.ID)
	}
	return out
}

// recordFences keeps what an isolated host did to its VMs, as tasks: the
// audit trail of every change.
func (s *Server) recordFences(ctx context.Context, h *api.Host, fenced []api.FenceRecord) {
	for _, f := range fenced {
		o, ok := s.cache.Get(api.KindVM, f.VM)
		if !ok {
			continue
		}
		t := tasks.Done(tasks.New(ctx, api.OpVMIsolation, o, f), f)
		t.Owner = "host " + h.Metadata.Name
		t.Message = fmt.Sprintf("%s by host %s at %s: %s", f.Action, h.Metadata.Name, f.At.Format(time.RFC3339), f.Reason)
		if _, err := s.submitter.Submit(ctx, s.store.Txn(), t); err != nil {
			s.log.Warn("cannot record an isolation response", "host", h.Metadata.Name, "vm", f.VM, "err", err)
		}
	}
}

// declareFailed marks a silent host of an HA cluster failed and queues
// the failover of its VMs, in one transaction that holds only while this
// server leads.
func (s *Server) declareFailed(ctx context.Context, h *api.Host, silent time.Duration) {
	upd := store.Clone(h)
	upd.Status.Connection = api.HostDisconnected
	upd.Status.FailedAt = time.Now().UTC()
	t := tasks.New(ctx, api.OpHostFailover, upd, nil)
	t.Owner = ownerHA
	t.Message = fmt.Sprintf("host %s failed: no heartbeat for %s", h.Metadata.Name, silent.Round(time.Second))
	if _, err := s.leaderTxn().Update(h, upd).Create(t).Commit(ctx); err != nil {
		return // it changed (a heartbeat?): judged again next tick
	}
	s.log.Warn("host failed: restarting its HA-protected VMs elsewhere", "host", h.Metadata.Name, "silent", silent.Round(time.Second))
	if h.Status.Connection == api.HostConnected { // failure detection shorter than the host timeout
		go s.markVMsUnknown(ctx, h) // not in the way of judging the other hosts
	}
}

// haDetection is how long a host may be silent before HA declares it
// failed: forever when its cluster has no HA.
func (s *Server) haDetection(h *api.Host) time.Duration {
	if co, ok := s.cache.Get(api.KindCluster, h.Spec.Cluster.ID); ok && co.(*api.Cluster).Spec.HA.On() {
		return co.(*api.Cluster).Spec.HA.FailureDetection()
	}
	return time.Duration(1<<63 - 1)
}

// haVM is a VM as the HA planner sees it.
func (s *Server) haVM(vm *api.VM) scheduler.HAVM {
	v := scheduler.HAVM{ID: vm.Metadata.ID, Name: vm.Metadata.Name, Host: vm.Spec.Host.ID, CPUs: vm.Spec.CPUs,
		MemoryBytes: int64(vm.Spec.MemoryBytes), Priority: api.HAPriorityOf(vm)}
	for _, d := range vm.Spec.Disks {
		v.Datastores = append(v.Datastores, d.Datastore.ID)
	}
	if io, ok := s.cache.Get(api.KindImage, vm.Spec.Image.ID); ok {
		v.Datastores = append(v.Datastores, io.(*api.Image).Spec.Datastore.ID)
	}
	return v
}

// checkHAAdmission is HA admission control for a power-on of vm on h.
func (s *Server) checkHAAdmission(vm *api.VM, cl *api.Cluster, h *api.Host) error {
	if !cl.Spec.HA.On() {
		return nil
	}
	var others []scheduler.HAVM
	state.Each(s.st, func(sh *api.Host) {
		if sh.Spec.Cluster.ID != cl.Metadata.ID {
			return
		}
		for _, other := range s.inv.VMsOn(sh.Metadata.ID) {
			if other.Metadata.ID != vm.Metadata.ID && state.HoldsResources(other) {
				others = append(others, s.haVM(other))
			}
		}
	})
	cand := s.haVM(vm)
	cand.Host = h.Metadata.ID
	return s.places.AdmitHA(vm, cl, cand, others)
}
