package network

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/api"
)

// lldpTxInterval is how often the host's lldpd advertises itself (its
// default is 30 s; a new neighbour shows within this).
const lldpTxInterval = 10

// LLDP runs the host's own lldpd (Debian's lldpd: its own control socket,
// so that hosts sharing a machine in network namespaces each have one) on
// the host's uplinks, and reads what it hears. lldpd outlives the agent;
// a restarted agent adopts it. Its files are under /run/vdc-lldp, open
// to all, not in the agent's data directory: lldpcli runs as the _lldpd
// user, who may not enter that.
type LLDP struct {
	dir  string // /run/vdc-lldp/<hash of the agent's data directory>
	name string // the host's name, advertised as its system name
	log  *slog.Logger
	ifs  []string // the interfaces lldpd runs on
}

func newLLDP(dataDir, hostName string, log *slog.Logger) *LLDP {
	sum := sha256.Sum256([]byte(dataDir))
	return &LLDP{dir: filepath.Join("/run/vdc-lldp", hex.EncodeToString(sum[:6])), name: hostName, log: log}
}

func (l *LLDP) socket() string  { return filepath.Join(l.dir, "lldpd.socket") }
func (l *LLDP) pidFile() string { return filepath.Join(l.dir, "lldpd.pid") }

// Ensure runs lldpd on interfaces ifs (adopting the one running), or says
// why it cannot.
func (l *LLDP) Ensure(ctx context.Context, ifs []string) error {
	if len(ifs) == 0 {
		return errors.New("the host has no uplinks to run LLDP on")
	}
	if _, err := exec.LookPath("lldpd"); err != nil {
		return errors.New("lldpd is not installed (apt-get install lldpd)")
	}
	if pid := l.running(); pid == 0 {
		if err := l.start(); err != nil {
			return err
		}
		l.ifs = nil
	}
	if slices.Equal(l.ifs, ifs) {
		return nil
	}
	for _, args := range [][]string{
		{"configure", "system", "hostname", l.name},
		{"configure", "lldp", "tx-interval", strconv.Itoa(lldpTxInterval)},
		{"configure", "system", "interface", "pattern", strings.Join(ifs, ",")},
	} {
		if _, err := l.cli(ctx, args...); err != nil {
			return err
		}
	}
	l.ifs = slices.Clone(ifs)
	return nil
}

// running is the pid of this host's lldpd, 0 if it is not running.
func (l *LLDP) running() int {
	b, err := os.ReadFile(l.pidFile())
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	// lldpd renames its processes ("lldpd: monitor."), so it is known by
	// its program and by its control socket answering.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != "lldpd" {
		return 0
	}
	c, err := net.Dial("unix", l.socket())
	if err != nil {
		return 0
	}
	c.Close()
	return pid
}

// start runs lldpd in its own session: it lives on when the agent dies.
func (l *LLDP) start() error {
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return fmt.Errorf("lldp: %w", err)
	}
	_ = os.Chmod(filepath.Dir(l.dir), 0o755)
	_ = os.Remove(l.socket())
	logf, err := os.OpenFile(filepath.Join(l.dir, "lldpd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("lldp: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command("lldpd", "-d", "-u", l.socket(), "-S", "vdc host "+l.name)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start lldpd: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reaped if it dies while the agent lives
	if err := os.WriteFile(l.pidFile(), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return fmt.Errorf("lldp: %w", err)
	}
	// Its control socket answers once it is up.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", l.socket()); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lldpd did not open its control socket %s within 10 s (see %s)", l.socket(), logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.log.Info("lldpd started", "pid", cmd.Process.Pid, "socket", l.socket())
	return nil
}

func (l *LLDP) cli(ctx context.Context, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "lldpcli", append([]string{"-u", l.socket()}, args...)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("lldpcli %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Neighbors reads what lldpd heard, by interface.
func (l *LLDP) Neighbors(ctx context.Context) (map[string][]api.LLDPNeighbor, error) {
	out, err := l.cli(ctx, "-f", "json", "show", "neighbors")
	if err != nil {
		return nil, err
	}
	return parseNeighbors(out)
}

// parseNeighbors reads lldpcli's JSON: an object keyed by interface, or,
// when there are several, a list of such objects; the same for chassis.
func parseNeighbors(b []byte) (map[string][]api.LLDPNeighbor, error) {
	var doc struct {
		LLDP struct {
			Interface json.RawMessage `json:"interface"`
		} `json:"lldp"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("read lldpcli's neighbours: %w", err)
	}
	out := map[string][]api.LLDPNeighbor{}
	for _, m := range objects(doc.LLDP.Interface) {
		for ifc, raw := range m {
			var e struct {
				Chassis json.RawMessage `json:"chassis"`
				Port    struct {
					ID struct {
						Value string `json:"value"`
					} `json:"id"`
					Descr string `json:"descr"`
				} `json:"port"`
			}
			if err := json.Unmarshal(raw, &e); err != nil {
				return nil, fmt.Errorf("read lldpcli's neighbour on %s: %w", ifc, err)
			}
			n := api.LLDPNeighbor{PortID: e.Port.ID.Value, PortDescr: e.Port.Descr}
			for _, cm := range objects(e.Chassis) {
				for name, craw := range cm {
					var c struct {
						ID struct {
							Value string `json:"value"`
						} `json:"id"`
						Descr  string          `json:"descr"`
						MgmtIP json.RawMessage `json:"mgmt-ip"`
					}
					_ = json.Unmarshal(craw, &c)
					n.SysName, n.ChassisID, n.Description = name, c.ID.Value, c.Descr
					var ips []string
					if json.Unmarshal(c.MgmtIP, &ips) != nil {
						var ip string
						_ = json.Unmarshal(c.MgmtIP, &ip)
						ips = []string{ip}
					}
					if len(ips) > 0 {
						n.MgmtIP = ips[0]
					}
				}
			}
			out[ifc] = append(out[ifc], n)
		}
	}
	return out, nil
}

// objects reads a JSON object, or a list of objects, as a list.
func objects(raw json.RawMessage) []map[string]json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var one map[string]json.RawMessage
	if json.Unmarshal(raw, &one) == nil {
		return []map[string]json.RawMessage{one}
	}
	var many []map[string]json.RawMessage
	_ = json.Unmarshal(raw, &many)
	return many
}

// uplinkNames are the interfaces the host's switches use: their named
// uplinks, and the interface that holds the host's tunnel address.
func uplinkNames(want *api.HostNetwork, tunnel string) []string {
	var names []string
	for _, sw := range want.Switches {
		names = append(names, sw.Uplinks...)
	}
	if ip, err := netip.ParseAddr(tunnel); err == nil && !ip.IsLoopback() {
		if ifc := interfaceWith(ip); ifc != "" {
			names = append(names, ifc)
		}
	}
	sort.Strings(names)
	return slices.Compact(names)
}

func interfaceWith(ip netip.Addr) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if x, ok := netip.AddrFromSlice(n.IP); ok && x.Unmap() == ip {
					return ifc.Name
				}
			}
		}
	}
	return ""
}

// describe reads an interface's state for the server.
func describe(name string, neighbors []api.LLDPNeighbor) api.HostUplink {
	u := api.HostUplink{Name: name, Neighbors: neighbors}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return u
	}
	u.MAC, u.MTU, u.Up = ifc.HardwareAddr.String(), ifc.MTU, ifc.Flags&net.FlagUp != 0
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		u.Addresses = append(u.Addresses, a.String())
	}
	return u
}

// WatchUplinks keeps the host's uplinks and their LLDP neighbours
// current (see Uplinks), running lldpd on them once the host has a
// switch, every lldpTxInterval until ctx ends. tunnel gives the host's
// tunnel address.
func (m *Manager) WatchUplinks(ctx context.Context, hostName string, tunnel func() string) {
	l := newLLDP(m.dir, hostName, m.log)
	t := time.NewTicker(lldpTxInterval * time.Second)
	defer t.Stop()
	for {
		m.mu.Lock()
		want := m.want
		m.mu.Unlock()
		if want != nil && len(want.Switches) > 0 {
			m.readUplinks(ctx, l, uplinkNames(want, tunnel()))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Manager) readUplinks(ctx context.Context, l *LLDP, names []string) {
	var neighbors map[string][]api.LLDPNeighbor
	why := ""
	if err := l.Ensure(ctx, names); err != nil {
		why = err.Error()
	} else if neighbors, err = l.Neighbors(ctx); err != nil {
		why = err.Error()
	}
	ups := make([]api.HostUplink, 0, len(names))
	for _, n := range names {
		ups = append(ups, describe(n, neighbors[n]))
	}
	m.upMu.Lock()
	changed := why != m.lldpWhy || !sameJSON(ups, m.uplinks)
	m.uplinks, m.lldpWhy = ups, why
	m.upMu.Unlock()
	if changed && m.onDone != nil {
		m.onDone()
	}
}

// Uplinks are the host's uplinks as last read, and why LLDP tells
// nothing of their neighbours ("" when it runs).
func (m *Manager) Uplinks() ([]api.HostUplink, string) {
	m.upMu.Lock()
	defer m.upMu.Unlock()
	return m.uplinks, m.lldpWhy
}
