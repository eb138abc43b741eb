package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/hostha"
	"github.com/vdc-project/vdc/internal/agent/network"
	"github.com/vdc-project/vdc/internal/agent/registry"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/version"
)

// Config of one host agent.
type Config struct {
	ServerURL string
	// JoinToken is needed only until the host has joined, and to join
	// again as the same host after `vdc host replace`. JoinTokenFile,
	// when set instead, holds it (read when needed).
	JoinToken     string
	JoinTokenFile string
	DataDir       string
	Name          string
	// Listen is where the agent's API listens (default 127.0.0.1:0 when
	// the server is on loopback, else :7444).
	Listen string
	// Advertise is the address the server should dial; default: the
	// listen address, with an unspecified IP replaced by the one this
	// machine uses to reach the server.
	Advertise string
	Driver    hypervisor.Driver
	// CapacityCPUs and CapacityMemory, when set, are the CPUs and memory
	// this host offers to VMs instead of the whole machine's: hosts that
	// share a machine (vdc up) share its capacity.
	CapacityCPUs   int
	CapacityMemory int64
	// Limits bound what clients that send nothing may hold on the agent
	// API (connections per address before a server's certificate is
	// seen, header, idle and request-body timeouts).
	Limits netguard.Limits
	// Networks are the switch backends by kind (api.Backend*); default:
	// the sim driver's accounting for a sim host, else bridge and ovs.
	Networks map[string]netconf.Backend
	// TunnelAddress is this host's end of VXLAN tunnels; default: the
	// advertised address's IP.
	TunnelAddress string
	Log           *slog.Logger
	// BeforeConvert, when set, is called before each imported disk is
	// converted, and an error from it fails the conversion: tests hold an
	// import there to cancel it mid-way. Nil in production.
	BeforeConvert func(ctx context.Context) error
}

// Agent runs one host.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	id    identity
	tls   atomic.Pointer[tlsState]
	hc    *http.Client // to the server; used by the heartbeat loop only
	certs certCare
	vms   *registry.Registry
	jobs  jobs
	net   *network.Manager

	addr     string // advertised
	interval time.Duration
	kick     chan struct{} // send a heartbeat now

	mu         sync.Mutex
	datastores []api.DatastoreToCheck
	refused    map[string]string // datastore ID -> why this host does not use it

	ha *hostha.Guard

	// Heartbeats carry only changes; these track what the server has.
	ackedSeq uint64
	beats    int
	needFull bool
}

// fullEvery is how many heartbeats pass between full VM lists.
const fullEvery = 15

// New checks the configuration; Run does the work.
func New(cfg Config) (*Agent, error) {
	if cfg.ServerURL == "" {
		return nil, errors.New("agent: --server is required")
	}
	if _, err := url.Parse(cfg.ServerURL); err != nil {
		return nil, fmt.Errorf("agent: server URL %q: %w", cfg.ServerURL, err)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("agent: --data is required")
	}
	if cfg.Driver == nil {
		return nil, errors.New("agent: no driver")
	}
	if cfg.Name == "" {
		h, _ := os.Hostname()
		cfg.Name = h
	}
	if err := api.ValidateName("host", cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Agent{cfg: cfg, log: cfg.Log.With("host", cfg.Name), interval: 2 * time.Second, kick: make(chan struct{}, 1), needFull: true}, nil
}

// HostID is the host's ID once joined.
func (a *Agent) HostID() string { return a.id.HostID }

// Run joins if needed, re-attaches the host's VMs, serves the server's
// requests and heartbeats until ctx ends. VMs keep running after it returns.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.checkCapacity(ctx); err != nil {
		return err
	}
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create agent data dir: %w", err)
	}
	unlock, err := lockDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()
	if err := a.loadOrJoin(ctx); err != nil {
		return err
	}
	a.log = a.log.With("hostID", a.id.HostID)
	if err := a.writeQEMUTLS(); err != nil {
		return fmt.Errorf("lay out the host certificate for QEMU: %w", err)
	}
	a.hc = a.newServerClient()
	a.vms = registry.New(filepath.Join(a.cfg.DataDir, "vms"), a.cfg.Driver, a.log, a.vmsChanged)
	if err := a.vms.Load(ctx); err != nil {
		return err
	}
	a.startNetwork(ctx)
	ln, err := a.listen()
	if err != nil {
		return err
	}
	// As on the server: no write or whole-request read timeout, for
	// multi-GB transfers and consoles.
	srv := a.cfg.Limits.Server(a.handler(), a.log)
	srv.TLSConfig = a.listenTLS()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("agent API stopped", "err", err)
		}
	}()
	go a.watchDriver(ctx)
	a.ha = hostha.New(a.cfg.DataDir, a.cfg.ServerURL, a.cfg.Driver, a.vms, a.log)
	go a.ha.Watch(ctx)
	a.log.Info("agent running", "api", a.addr, "server", a.cfg.ServerURL, "vms", a.vms.Count())
	a.heartbeatLoop(ctx)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	// Let go of the VMs without touching them.
	if c, ok := a.cfg.Driver.(io.Closer); ok {
		_ = c.Close()
	}
	a.log.Info("agent stopped; its VMs keep running")
	return nil
}

// checkCapacity refuses to offer VMs more than the machine has.
func (a *Agent) checkCapacity(ctx context.Context) error {
	if a.cfg.CapacityCPUs == 0 && a.cfg.CapacityMemory == 0 {
		return nil
	}
	info, err := a.cfg.Driver.Info(ctx)
	if err != nil {
		return fmt.Errorf("read host info from driver: %w", err)
	}
	switch {
	case a.cfg.CapacityCPUs < 0 || a.cfg.CapacityCPUs > info.CPUs:
		return fmt.Errorf("agent: --capacity-cpus %d: give 1 to this machine's %d CPUs", a.cfg.CapacityCPUs, info.CPUs)
	case a.cfg.CapacityMemory < 0 || a.cfg.CapacityMemory > info.MemoryBytes:
		return fmt.Errorf("agent: --capacity-memory %s: give at most this machine's %s", api.Size(a.cfg.CapacityMemory), api.Size(info.MemoryBytes))
	}
	return nil
}

func (a *Agent) listen() (net.Listener, error) {
	l := a.cfg.Listen
	if l == "" {
		l = ":7444"
		if hostha.ServerIsLocal(a.cfg.ServerURL) {
			l = "127.0.0.1:0"
		}
	}
	ln, err := netguard.Listen(l, a.cfg.Limits, a.log)
	if err != nil {
		return nil, fmt.Errorf("agent API listen on %s: %w", l, err)
	}
	a.addr = a.cfg.Advertise
	if a.addr == "" {
		a.addr = advertised(ln.Addr().(*net.TCPAddr), a.cfg.ServerURL)
	}
	return ln, nil
}

// advertised turns a listen address into one the server can dial.
func advertised(la *net.TCPAddr, serverURL string) string {
	ip := la.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if u, err := url.Parse(serverURL); err == nil {
			port := u.Port()
			if port == "" {
				port = "443"
			}
			// UDP "dial" sends nothing; it only asks the kernel for the route.
			if c, err := net.Dial("udp", net.JoinHostPort(u.Hostname(), port)); err == nil {
				ip = c.LocalAddr().(*net.UDPAddr).IP
				c.Close()
			}
		}
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(la.Port))
}

// changed asks for a heartbeat now, so the server hears of a state change
// without waiting for the next tick.
func (a *Agent) changed() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

func (a *Agent) watchDriver(ctx context.Context) {
	for id := range a.cfg.Driver.Subscribe(ctx) {
		a.vms.Refresh(ctx, id)
	}
}

func (a *Agent) heartbeatLoop(ctx context.Context) {
	failures := 0
	for {
		err := a.heartbeat(ctx)
		switch {
		case err == nil:
			if failures > 0 {
				a.log.Info("server reachable again", "after", failures)
			}
			failures = 0
		case ctx.Err() != nil:
			return
		default:
			failures++
			if failures == 1 || failures%30 == 0 {
				a.log.Warn("heartbeat failed; VMs keep running, retrying", "err", err, "failures", failures)
			}
		}
		a.tendCertificate(ctx, err)
		t := time.NewTimer(a.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

func (a *Agent) heartbeat(ctx context.Context) error {
	info, err := a.cfg.Driver.Info(ctx)
	if err != nil {
		return fmt.Errorf("read host info from driver: %w", err)
	}
	hn, _ := os.Hostname()
	full := a.needFull || a.beats%fullEvery == 0
	vms, seq := a.vms.States(ctx, full)
	if !full {
		changed := vms[:0]
		for _, v := range vms {
			if v.Seq > a.ackedSeq {
				changed = append(changed, v)
			}
		}
		vms = changed
	}
	hb := api.Heartbeat{
		Address: a.addr, Hostname: hn, Driver: info.Driver, Accel: info.Accel, AccelReason: info.AccelReason,
		Version: version.String(), Hypervisor: info.Version,
		CPUs: cmp.Or(a.cfg.CapacityCPUs, info.CPUs), MemoryBytes: api.Size(cmp.Or(a.cfg.CapacityMemory, info.MemoryBytes)),
		VMs: vms, Full: full, VMsSeq: seq, Datastores: a.checkDatastores(),
		Incoming: a.vms.IncomingOlderThan(incomingGrace),
		HAGen:    a.ha.Gen(), Fenced: a.ha.PendingFences(),
		TunnelAddress: a.tunnelAddress(),
	}
	hb.NetworkGen, hb.Networks = a.net.Report()
	hb.Uplinks, hb.LLDP = a.net.Uplinks()
	var resp api.HeartbeatResponse
	if err := a.post(ctx, "/api/v1/agent/heartbeat", hb, &resp); err != nil {
		a.needFull = true // the server may have missed changes
		return err
	}
	a.ackedSeq, a.needFull = seq, resp.SendFull
	if resp.SendFull {
		a.changed() // at once: the server shows this host's VMs unknown
	}
	a.certs.renewAsked = resp.RenewCertificate
	a.beats++
	if resp.IntervalSeconds > 0 {
		a.interval = time.Duration(resp.IntervalSeconds) * time.Second
	}
	policyChanged, err := a.ha.Contact(len(hb.Fenced), resp.HA, a.interval)
	if err != nil {
		a.log.Warn("cannot save the HA settings", "err", err)
	}
	if policyChanged {
		a.ha.ApplyLeases(ctx)
	}
	a.dropVMs(ctx, resp.Drop)
	a.mu.Lock()
	changed := !slices.Equal(a.datastores, resp.Datastores)
	a.datastores = resp.Datastores
	a.mu.Unlock()
	if changed {
		a.changed() // report on the new datastores without waiting a tick
	}
	a.dropIncoming(ctx, resp.DropIncoming)
	if resp.Network != nil {
		if err := a.net.Set(resp.Network); err != nil {
			a.log.Warn("cannot take the desired network", "err", err)
		}
	}
	return nil
}

// incomingGrace is how long a copy being received is left alone before
// the server is asked whether a migration still waits for it: long
// enough for the task that made it to be visible everywhere.
const incomingGrace = 10 * time.Second

// dropIncoming throws away copies of migrations that ended while the
// server could not tell this host (a cut network, a server restart).
func (a *Agent) dropIncoming(ctx context.Context, ids []string) {
	if len(ids) == 0 {
		return
	}
	m, err := a.migrator()
	if err != nil {
		return
	}
	for _, id := range ids {
		err := a.vms.AbortIncoming(ctx, m, id)
		a.log.Warn("dropped the copy of a migration that no longer runs", "vm", id, "err", err)
	}
}

// checkDatastores reports the space of every datastore the server asked about.
func (a *Agent) checkDatastores() []api.DatastoreSeen {
	a.mu.Lock()
	dss := a.datastores
	a.mu.Unlock()
	out := make([]api.DatastoreSeen, 0, len(dss))
	for _, ds := range dss {
		seen := api.DatastoreSeen{ID: ds.ID}
		var st syscall.Statfs_t
		_, rerr := a.datastoreRoot(ds)
		a.noteRefused(ds, rerr)
		if rerr != nil {
			seen.Error = rerr.Error()
		} else if fi, err := os.Stat(ds.Path); err != nil {
			seen.Error = err.Error()
		} else if !fi.IsDir() {
			seen.Error = ds.Path + " is not a directory"
		} else if err := syscall.Statfs(ds.Path, &st); err != nil {
			seen.Error = err.Error()
		} else {
			seen.Reachable = true
			seen.CapacityBytes = api.Size(int64(st.Blocks) * st.Bsize)
			seen.FreeBytes = api.Size(int64(st.Bavail) * st.Bsize)
		}
		out = append(out, seen)
	}
	return out
}

// noteRefused logs, once per change, that a datastore is refused (a
// system directory, the agent's own data) or usable again.
func (a *Agent) noteRefused(ds api.DatastoreToCheck, err error) {
	if err != nil && !errors.Is(err, api.ErrInvalid) {
		return // not there (yet): reported as unreachable
	}
	why := ""
	if err != nil {
		why = err.Error()
	}
	a.mu.Lock()
	old := a.refused[ds.ID]
	if a.refused == nil {
		a.refused = map[string]string{}
	}
	a.refused[ds.ID] = why
	a.mu.Unlock()
	switch {
	case why != "" && why != old:
		a.log.Warn("datastore refused", "datastore", ds.ID, "path", ds.Path, "err", err)
	case why == "" && old != "":
		a.log.Info("datastore usable again", "datastore", ds.ID, "path", ds.Path)
	}
}

func (a *Agent) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.cfg.ServerURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode/100 != 2 {
		var eb api.ErrorBody
		if json.Unmarshal(rb, &eb) == nil && eb.Error != nil {
			eb.Error.Status = resp.StatusCode
			return eb.Error
		}
		return fmt.Errorf("POST %s: HTTP %d", path, resp.StatusCode)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

// lockDir keeps two agents from running on one data dir.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock agent data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent data dir %s is in use by another agent", dir)
	}
	return func() { f.Close() }, nil
}

// peerIsServer checks that a request to the agent API comes from a
// management server, not from another host.
func peerIsServer(r *http.Request) bool {
	return pki.PeerCN(r.TLS) == pki.ServerCN
}
