// Package ha is high availability (vSphere HA, Proxmox's HA manager): HA
// settings and admission control, host failover and VM monitoring.
//
// The liveness service publishes a host of an HA cluster that has been
// silent for the cluster's failure detection time (hosts.HostFailed); HA
// declares it failed and a host.failover task restarts its protected VMs
// on the other hosts, highest priority first, each as a vm.ha-restart
// task. The hosts do their part on their own (internal/agent/ha.go): an
// isolated host stops its protected VMs before the detection time is up,
// and a VM's lease keeps a second copy from starting whatever the timing.
// On the leader, VM monitoring resets (vm.ha-reset) the VMs whose guest
// agent stopped answering.
//
// ha depends on state, tasks, hosts (the client and the event bus),
// placement, inventory and the scheduler's pure HA planner; it calls no
// other domain package. vms calls it for admission control through an
// interface of its own.
package ha

import (
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// Owner is the owner of the tasks HA starts on its own.
const Owner = "ha"

// maxAttempts is how many times HA tries to restart a VM (vSphere's
// das.maxvmrestartcount is 5 too); retryDelay the wait before the first
// retry, doubled each time.
const (
	maxAttempts = 5
	retryDelay  = 5 * time.Second
)

// Deps is what the HA service works with.
type Deps struct {
	State  *state.State
	Inv    *inventory.Inventory
	Hosts  hosts.Client
	Places *placement.Placer
	Tasks  *tasks.Submitter
	// Txn starts a leader-fenced transaction (declaring a host failed).
	Txn func() *store.Txn
	// HeartbeatInterval is how often hosts report: failure detection may
	// not be shorter than 1.5 of them.
	HeartbeatInterval time.Duration
	// RetryDelay is the wait before the first retry of restarts that
	// failed (default 5 s), doubled each time.
	RetryDelay time.Duration
	Log        *slog.Logger
}

// Service is HA.
type Service struct {
	d Deps
}

// New returns the HA service.
func New(d Deps) *Service {
	if d.RetryDelay <= 0 {
		d.RetryDelay = retryDelay
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d}
}

// Register registers HA's task handlers.
func (s *Service) Register(r *tasks.Runner) {
	r.Register(api.OpHostFailover, tasks.Handler{Run: s.runHostFailover, Resumable: true})
	r.Register(api.OpVMHARestart, tasks.Handler{Run: s.runVMHARestart, Resumable: true})
	r.Register(api.OpVMHAReset, tasks.Handler{Run: s.runVMHAReset, Interrupted: "the VM may or may not have been reset"})
}

// Subscribe makes HA act on what the hosts' heartbeats and silences tell:
// a failed host (declared failed, its VMs restarted elsewhere), one that
// is back, VMs a host still runs that HA restarted elsewhere, isolation
// fences, and the HA settings a host runs. The returned func unsubscribes.
func (s *Service) Subscribe(b *hosts.Bus) (cancel func()) {
	cancels := []func(){
		hosts.On(b, s.onHostFailed),
		hosts.On(b, s.onHostRecovered),
		hosts.On(b, s.onVMsReported),
		hosts.On(b, s.onFenced),
		hosts.On(b, s.onHASettings),
	}
	return func() {
		for _, c := range cancels {
			c()
		}
	}
}

// busyVMs are the VMs some unfinished task works on, but for the tasks
// that are children of parent (when not empty).
func (s *Service) busyVMs(parent string) map[string]bool {
	busy := map[string]bool{}
	state.Each(s.d.State, func(t *api.Task) {
		if t.Target.Kind == api.KindVM && !api.TaskDone(t.State) && (parent == "" || t.Parent != parent) {
			busy[t.Target.ID] = true
		}
	})
	return busy
}
