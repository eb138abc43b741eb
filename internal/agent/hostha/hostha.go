// Package hostha is the host agent's part of HA: the HA policy the server
// gives the host (kept in its data dir), the leases its protected VMs
// hold, and the isolation response. It calls the agent's VM registry and
// the hypervisor driver.
package hostha

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/registry"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// The host's part of HA: when it loses the server, it tells isolation
// (its isolation addresses do not answer either) from a lost server (they
// do), and, isolated, applies the cluster's isolation response to its
// protected VMs well before the server's failure detection time is up, so
// that the server restarts them elsewhere only once they are off here.
// The lease each running VM holds is the second guard: a copy left running
// here keeps the restart elsewhere from starting.

// state is what the host knows of HA; it is kept in <data>/ha.json so
// that an agent restarted while cut off still protects its VMs.
type state struct {
	path string

	mu          sync.Mutex
	Policy      *api.HostHA       `json:"policy,omitempty"`
	Fenced      []api.FenceRecord `json:"fenced,omitempty"` // not yet reported
	lastContact time.Time
	heartbeat   time.Duration // the server's heartbeat interval
	isolated    bool          // the isolation response was applied for this outage
	partitioned bool          // the server is lost but the isolation addresses answer
}

func loadState(dataDir string) *state {
	h := &state{path: filepath.Join(dataDir, "ha.json"), lastContact: time.Now()}
	if b, err := os.ReadFile(h.path); err == nil {
		_ = json.Unmarshal(b, h)
	}
	return h
}

// Guard applies the host's part of HA.
type Guard struct {
	ha        *state
	vms       *registry.Registry
	drv       hypervisor.Driver
	serverURL string
	log       *slog.Logger
}

// New loads what the host knows of HA from its data dir; the server is at
// serverURL.
func New(dataDir, serverURL string, drv hypervisor.Driver, vms *registry.Registry, log *slog.Logger) *Guard {
	return &Guard{ha: loadState(dataDir), vms: vms, drv: drv, serverURL: serverURL, log: log}
}

// Gen is the version of the HA policy the host has, for the heartbeat.
func (g *Guard) Gen() string { return g.ha.gen() }

// PendingFences are the isolation records to report in the next
// heartbeat.
func (g *Guard) PendingFences() []api.FenceRecord { return g.ha.pendingFences() }

// Contact records a heartbeat the server answered (see state.contact).
func (g *Guard) Contact(reported int, policy *api.HostHA, heartbeat time.Duration) (bool, error) {
	return g.ha.contact(reported, policy, heartbeat)
}

// save writes the state; the caller holds mu.
func (h *state) save() error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(h.path, b, 0o600)
}

// gen is the version of the policy the host has.
func (h *state) gen() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Policy == nil {
		return ""
	}
	return h.Policy.Gen
}

// pendingFences are the records to report in the next heartbeat.
func (h *state) pendingFences() []api.FenceRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.Fenced)
}

// contact records a heartbeat the server answered: the outage, if any, is
// over, the fences it reported are acknowledged, and a new policy (nil:
// unchanged) applies. It says whether the policy changed.
func (h *state) contact(reported int, policy *api.HostHA, heartbeat time.Duration) (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastContact, h.heartbeat = time.Now(), heartbeat
	h.isolated, h.partitioned = false, false
	changed := policy != nil
	h.Fenced = h.Fenced[min(reported, len(h.Fenced)):]
	if changed {
		if policy.Gen == "" {
			policy = nil // the host's cluster has no HA (any more)
		}
		h.Policy = policy
	}
	if changed || reported > 0 {
		return changed, h.save()
	}
	return false, nil
}

// ApplyLeases makes the VMs running here hold the leases the HA policy
// names: HA was turned on, or a VM's priority changed, while they ran.
func (g *Guard) ApplyLeases(ctx context.Context) {
	h := g.ha
	h.mu.Lock()
	want := map[string]string{}
	if h.Policy != nil {
		for _, pv := range h.Policy.Protected {
			want[pv.ID] = pv.Lease
		}
	}
	h.mu.Unlock()
	l, ok := g.drv.(hypervisor.Leaser)
	if !ok {
		return
	}
	for _, id := range g.vms.IDs() {
		if want[id] == "" || l.Lease(id) == want[id] {
			continue
		}
		if err := g.vms.HoldLease(ctx, id, want[id]); err != nil {
			g.log.Error("cannot make a running VM hold its lease", "vm", id, "err", err)
		}
	}
}

// isolationDelay is how long the host waits without the server before it
// checks whether it is isolated: half the failure detection time, so that
// the isolation response is usually done before the server restarts the
// VMs, but never less than three heartbeats, so that a slow server is not
// taken for a lost one. Late is safe: the VMs' leases refuse the restarts
// until the response is applied, and HA tries them again.
func isolationDelay(p *api.HostHA, heartbeat time.Duration) time.Duration {
	d := time.Duration(p.FailureDetectionSeconds) * time.Second / 2
	return max(d, 3*heartbeat, time.Second)
}

// Watch checks for isolation while the agent runs.
func (g *Guard) Watch(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.checkIsolation(ctx)
	}
}

func (g *Guard) checkIsolation(ctx context.Context) {
	h := g.ha
	h.mu.Lock()
	p, silent, done, beat := h.Policy, time.Since(h.lastContact), h.isolated, h.heartbeat
	h.mu.Unlock()
	if p == nil || !p.Enabled || done || silent < isolationDelay(p, beat) {
		return
	}
	if ServerIsLocal(g.serverURL) {
		// No network stands between this host and the server: it is the
		// server that is gone, not this host that is cut off.
		return
	}
	addrs := p.IsolationAddresses
	if len(addrs) == 0 {
		if gw, err := defaultGateway(); err == nil {
			addrs = []string{gw}
		}
	}
	// A lost packet is not isolation: each address gets three tries.
	for try := 0; try < 3; try++ {
		for _, addr := range addrs {
			if !ping(ctx, addr, 500*time.Millisecond) {
				continue
			}
			h.mu.Lock()
			if !h.partitioned {
				h.partitioned = true
				g.log.Warn("the server is unreachable but isolation address answers: not isolated; VMs keep running",
					"silent", silent.Round(time.Second), "address", addr)
			}
			h.mu.Unlock()
			return
		}
	}
	h.mu.Lock()
	silent = time.Since(h.lastContact) // the server may have answered meanwhile
	h.mu.Unlock()
	if ctx.Err() != nil || silent < isolationDelay(p, beat) {
		return
	}
	deadline := time.Duration(p.FailureDetectionSeconds)*time.Second - silent - time.Second
	g.log.Warn("host isolated: the server and the isolation addresses are unreachable",
		"silent", silent.Round(time.Second), "addresses", addrs, "response", p.IsolationResponse)
	g.fence(ctx, p, max(deadline, time.Second))
}

// ServerIsLocal says whether the server at serverURL is on this machine
// (loopback), as under `vdc up`.
func ServerIsLocal(serverURL string) bool {
	u, err := url.Parse(serverURL)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

// fence applies the isolation response to the protected VMs that run
// here. A shutdown that takes longer than allowed ends in a power-off.
func (g *Guard) fence(ctx context.Context, p *api.HostHA, allowed time.Duration) {
	h := g.ha
	h.mu.Lock()
	h.isolated = true
	h.mu.Unlock()
	if p.IsolationResponse == api.IsolationLeaveRunning {
		g.log.Warn("isolation response is leave-running: protected VMs keep running and hold their leases, so nobody restarts them")
		return
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var records []api.FenceRecord
	for _, pv := range p.Protected {
		id := pv.ID
		e, err := g.vms.Get(id)
		if err != nil || g.vms.IsIncoming(e) {
			continue
		}
		st, err := g.drv.State(ctx, id)
		if err != nil || st.Power == hypervisor.StateOff {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := api.PowerRequest{Action: api.ActionStop, Force: true}
			if p.IsolationResponse == api.IsolationShutdown {
				req = api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: max(int(allowed/time.Second), 1)}
			}
			_, err := g.vms.Power(ctx, id, req)
			rec := api.FenceRecord{VM: id, Action: p.IsolationResponse, At: time.Now().UTC(),
				Reason: "host isolated: the server and its isolation addresses were unreachable"}
			if err != nil {
				rec.Reason += "; failed: " + err.Error()
				g.log.Error("isolation response failed", "vm", e.Cfg.Name, "err", err)
			} else {
				g.log.Warn("isolation response applied", "vm", e.Cfg.Name, "action", p.IsolationResponse)
			}
			mu.Lock()
			records = append(records, rec)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(records) == 0 {
		return
	}
	h.mu.Lock()
	h.Fenced = append(h.Fenced, records...)
	if err := h.save(); err != nil {
		g.log.Warn("cannot save the isolation records", "err", err)
	}
	h.mu.Unlock()
}
