// Package network keeps a host's networks as the server wants them: it
// holds the host's desired network (the last one the server sent, saved
// so that a restarted agent converges before the server answers), adds
// the ports of the VMs the host runs, and has each switch backend
// converge the host to it, again after every change and every
// ResyncEvery. Before a VM starts or arrives by migration, Ensure makes
// its ports and says clearly why one cannot be plugged in.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netconf"
)

var errNoPortGroup = errors.New("its port group is not on this host's switches")

// ResyncEvery is how often the manager converges with nothing changed,
// repairing what someone changed by hand.
const ResyncEvery = time.Minute

// Manager converges one host's networks.
type Manager struct {
	dir      string
	dhcpDir  string // set: run the port groups' DHCP services
	file     string
	backends map[string]netconf.Backend // by api.Backend*
	vms      func() []hypervisor.VMConfig
	log      *slog.Logger
	kick     chan struct{}
	onDone   func() // after a converge: report it

	mu      sync.Mutex // one converge at a time; guards the fields below
	want    *api.HostNetwork
	newWant chan struct{} // closed (and replaced) when want changes
	realize string        // Gen of the last converge
	reports []api.SwitchReport
	ports   map[string]error // by tap, from the last converge

	upMu    sync.Mutex // guards the uplinks as last read
	uplinks []api.HostUplink
	lldpWhy string
}

// New is the manager of a host whose data directory is dir; vms lists
// the configs of the VMs the host has (defined or arriving); onDone is
// called after each converge.
func New(dir string, backends map[string]netconf.Backend, vms func() []hypervisor.VMConfig, log *slog.Logger, onDone func()) *Manager {
	m := &Manager{dir: dir, file: filepath.Join(dir, "network.json"), backends: backends, vms: vms, log: log,
		kick: make(chan struct{}, 1), onDone: onDone, ports: map[string]error{}, newWant: make(chan struct{})}
	b, err := os.ReadFile(m.file)
	if err == nil {
		var want api.HostNetwork
		if err := json.Unmarshal(b, &want); err != nil {
			log.Warn("the saved desired network is unreadable; waiting for the server's", "file", m.file, "err", err)
		} else {
			m.want = &want
		}
	}
	return m
}

// Run converges whenever asked (Set, Changed) and every ResyncEvery
// until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(ResyncEvery)
	defer t.Stop()
	for {
		m.converge(ctx)
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-t.C:
		}
	}
}

// Changed asks for a converge soon (VMs came or went).
func (m *Manager) Changed() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Set records a new desired network from the server and converges to it.
func (m *Manager) Set(want *api.HostNetwork) error {
	b, err := json.Marshal(want)
	if err != nil {
		return fmt.Errorf("save the desired network: %w", err)
	}
	if err := atomicfile.WriteFile(m.file, b, 0o600); err != nil {
		return fmt.Errorf("save the desired network: %w", err)
	}
	m.mu.Lock()
	m.want = want
	close(m.newWant) // wakes those waiting for a new desired network
	m.newWant = make(chan struct{})
	m.mu.Unlock()
	m.Changed()
	return nil
}

// Report is what the host tells the server in a heartbeat: the version
// of the desired network it realized and how each switch went.
func (m *Manager) Report() (gen string, reports []api.SwitchReport) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.realize, m.reports
}

// Ensure converges with vm's NICs included and says why one of them
// cannot be plugged in: its switch or port group is not on this host,
// or not realized.
//
// A port group made a moment ago may not have reached the host yet: then
// it asks for a heartbeat at once (its answer brings the new network) and
// tries again, for up to newNetworkWait.
func (m *Manager) Ensure(ctx context.Context, vm hypervisor.VMConfig) error {
	if !switched(vm) {
		return nil
	}
	deadline := time.Now().Add(newNetworkWait)
	for {
		err, missing := m.ensure(ctx, vm)
		if !missing || time.Now().After(deadline) {
			return err
		}
		m.mu.Lock()
		wait := m.newWant
		m.mu.Unlock()
		if m.onDone != nil {
			m.onDone() // a heartbeat now
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-wait:
		case <-t.C:
		}
		t.Stop()
	}
}

// newNetworkWait is how long Ensure waits for a port group the host has
// not heard of yet.
const newNetworkWait = 20 * time.Second

// ensure converges with vm's NICs; missing says that one's port group is
// not (yet) in the host's desired network.
func (m *Manager) ensure(ctx context.Context, vm hypervisor.VMConfig) (err error, missing bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.want == nil {
		return fmt.Errorf("vm %s: this host has not received its network from the server yet", vm.Name), true
	}
	m.convergeLocked(ctx, &vm)
	for _, n := range vm.NICs {
		if n.Tap == "" {
			continue
		}
		if perr := m.ports[n.Tap]; perr != nil {
			if err == nil {
				err = fmt.Errorf("plug %s of vm %s into port group %s: %w", n.Name, vm.Name, m.pgName(n.PortGroup), perr)
			}
			missing = missing || errors.Is(perr, errNoPortGroup)
		}
	}
	return err, missing
}

func switched(vm hypervisor.VMConfig) bool {
	for _, n := range vm.NICs {
		if n.Tap != "" {
			return true
		}
	}
	return false
}

func (m *Manager) converge(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.want == nil {
		return // nothing known yet: leave the host as it is
	}
	m.convergeLocked(ctx, nil)
}

// convergeLocked has each backend converge to its part of the desired
// network, with the ports of the host's VMs and extra's.
func (m *Manager) convergeLocked(ctx context.Context, extra *hypervisor.VMConfig) {
	want := m.want
	byBackend, pgBackend := m.split(want)
	ports := m.portsOf(extra)
	reports := []api.SwitchReport{}
	m.ports = map[string]error{}
	for _, name := range backendNames(m.backends) {
		be := m.backends[name]
		host := byBackend[name]
		for _, p := range ports {
			if pgBackend[p.PortGroup] == name {
				host.Ports = append(host.Ports, p)
			}
		}
		rep, err := be.Converge(ctx, host)
		for _, sw := range host.Switches {
			r := api.SwitchReport{Switch: sw.ID}
			if err != nil {
				r.Error = err.Error()
			} else if sr, ok := rep.Switches[sw.ID]; ok {
				if sr.Err != nil {
					r.Error = sr.Err.Error()
				}
				for pg, e := range sr.PortGroups {
					if r.PortGroups == nil {
						r.PortGroups = map[string]string{}
					}
					r.PortGroups[pg] = e.Error()
				}
			}
			reports = append(reports, r)
		}
		for _, p := range host.Ports {
			switch {
			case err != nil:
				m.ports[p.Tap] = err
			case rep.Ports[p.Tap] != nil:
				m.ports[p.Tap] = rep.Ports[p.Tap]
			default:
				m.ports[p.Tap] = nil
			}
		}
		if err != nil {
			m.log.Warn("network: converging failed", "backend", name, "err", err)
		}
	}
	for _, sw := range want.Switches {
		if _, ok := byBackend[sw.Backend]; ok {
			if _, ok := m.backends[onlyBackend(m.backends, sw.Backend)]; !ok {
				reports = append(reports, api.SwitchReport{Switch: sw.ID, Error: fmt.Sprintf("this host has no %s switch backend", sw.Backend)})
			}
		}
	}
	for _, p := range ports {
		if _, ok := m.ports[p.Tap]; !ok {
			m.ports[p.Tap] = errNoPortGroup
		}
	}
	vms := m.vms()
	if extra != nil {
		vms = append(vms, *extra)
	}
	m.convergeDHCP(ctx, want, pgBackend, reports, vms)
	sort.Slice(reports, func(i, j int) bool { return reports[i].Switch < reports[j].Switch })
	changed := m.realize != want.Gen || !sameJSON(m.reports, reports)
	m.realize, m.reports = want.Gen, reports
	if changed && m.onDone != nil {
		m.onDone()
	}
}

// split turns the desired network into each backend's share, and maps
// each port group to the backend that realizes it.
func (m *Manager) split(want *api.HostNetwork) (map[string]netconf.Host, map[string]string) {
	out := map[string]netconf.Host{}
	pgBackend := map[string]string{}
	for _, sw := range want.Switches {
		name := sw.Backend
		if _, ok := m.backends[name]; !ok {
			name = onlyBackend(m.backends, name)
		}
		h := out[name]
		h.Switches = append(h.Switches, toSwitch(sw))
		out[name] = h
		for _, pg := range sw.PortGroups {
			pgBackend[pg.ID] = name
		}
	}
	return out, pgBackend
}

// onlyBackend is the backend that stands in for every kind (the sim
// driver's), or the name itself when there is none such.
func onlyBackend(bs map[string]netconf.Backend, name string) string {
	if len(bs) == 1 {
		for n := range bs {
			return n
		}
	}
	return name
}

func backendNames(bs map[string]netconf.Backend) []string {
	var out []string
	for n := range bs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// portsOf lists the ports of the host's VMs, and extra's.
func (m *Manager) portsOf(extra *hypervisor.VMConfig) []netconf.Port {
	vms := m.vms()
	if extra != nil {
		vms = append(vms, *extra)
	}
	seen := map[string]bool{}
	var out []netconf.Port
	for _, vm := range vms {
		for _, n := range vm.NICs {
			if n.Tap == "" || seen[n.Tap] {
				continue
			}
			seen[n.Tap] = true
			mac, _ := net.ParseMAC(n.MAC)
			out = append(out, netconf.Port{Tap: n.Tap, Alias: fmt.Sprintf("vm %s %s", vm.Name, n.Name), MAC: mac,
				PortGroup: n.PortGroup, Down: n.LinkDown})
		}
	}
	return out
}

func toSwitch(sw api.HostSwitch) netconf.Switch {
	out := netconf.Switch{ID: sw.ID, Name: sw.Name, MTU: sw.MTU, Uplinks: sw.Uplinks}
	out.LocalIP, _ = netip.ParseAddr(sw.LocalIP)
	for _, pg := range sw.PortGroups {
		p := netconf.PortGroup{ID: pg.ID, Name: pg.Name, VNI: pg.VNI, VLAN: pg.VLAN, Isolated: pg.Isolated,
			Policy: netconf.Policy{AllowMACChanges: pg.Security.AllowMACChanges, AllowForgedTransmits: pg.Security.AllowForgedTransmits,
				AllowPromiscuous: pg.Security.AllowPromiscuous, In: shape(pg.Shaping.In), Out: shape(pg.Shaping.Out)}}
		for _, a := range pg.Peers {
			if ip, err := netip.ParseAddr(a); err == nil {
				p.Peers = append(p.Peers, ip)
			}
		}
		out.PortGroups = append(out.PortGroups, p)
	}
	return out
}

func shape(s *api.TrafficShape) netconf.Shape {
	if s == nil {
		return netconf.Shape{}
	}
	return netconf.Shape{AverageBitsPerSec: s.AverageBitsPerSec, PeakBitsPerSec: s.PeakBitsPerSec, BurstBytes: uint64(s.BurstBytes)}
}

func (m *Manager) pgName(id string) string {
	for _, sw := range m.want.Switches {
		for _, pg := range sw.PortGroups {
			if pg.ID == id {
				return pg.Name
			}
		}
	}
	return id
}

func sameJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// PlugNICs names the tap of each of cfg's NICs that is on a switch, and
// turns off the offloads of those whose switch's backend cannot finish
// them (TapOffloads).
func (m *Manager) PlugNICs(cfg *hypervisor.VMConfig) {
	PlugNICs(cfg)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.want == nil {
		return
	}
	_, pgBackend := m.split(m.want)
	for i := range cfg.NICs {
		n := &cfg.NICs[i]
		be, ok := m.backends[pgBackend[n.PortGroup]].(interface{ TapOffloads() bool })
		n.NoOffloads = n.Tap != "" && ok && !be.TapOffloads()
	}
}

// PlugNICs names the tap of each of cfg's NICs that is on a switch.
func PlugNICs(cfg *hypervisor.VMConfig) {
	for i := range cfg.NICs {
		n := &cfg.NICs[i]
		n.Tap = ""
		if n.Switch != "" {
			// By the NIC's own number (nic2), which stays when another goes.
			num, err := strconv.Atoi(strings.TrimPrefix(n.Name, "nic"))
			if err != nil {
				num = i
			}
			n.Tap = netconf.TapName(cfg.ID, num)
		}
	}
}
