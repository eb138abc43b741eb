package network

import (
	"context"
	"sync"

	"github.com/vdc-project/vdc/internal/netconf"
)

// Sim is the sim driver's switch backend: it makes no devices, it
// accounts for what a host would realize (its switches, port groups and
// ports) so that the API works at scale.
type Sim struct {
	mu   sync.Mutex
	last netconf.Host
}

func (*Sim) Name() string                      { return "sim" }
func (*Sim) Caps(context.Context) netconf.Caps { return netconf.Caps{} }

// Converge records want; every switch, port group and port of it is
// realized, but a port whose port group is not in want.
func (s *Sim) Converge(_ context.Context, want netconf.Host) (netconf.Report, error) {
	s.mu.Lock()
	s.last = want
	s.mu.Unlock()
	rep := netconf.Report{Switches: map[string]netconf.SwitchReport{}, Ports: map[string]error{}}
	pgs := map[string]bool{}
	for _, sw := range want.Switches {
		rep.Switches[sw.ID] = netconf.SwitchReport{}
		for _, pg := range sw.PortGroups {
			pgs[pg.ID] = true
		}
	}
	for _, p := range want.Ports {
		if !pgs[p.PortGroup] {
			rep.Ports[p.Tap] = errNoPortGroup
		}
	}
	return rep, nil
}

// Ports counts the ports the last converge plugged in.
func (s *Sim) Ports() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.last.Ports)
}

// Unavailable stands in for a backend this host cannot run: every switch
// reports Why.
type Unavailable struct{ Why error }

func (Unavailable) Name() string { return "unavailable" }
func (u Unavailable) Caps(context.Context) netconf.Caps {
	return netconf.Caps{VLAN: u.Why, Teaming: u.Why}
}
func (u Unavailable) Converge(context.Context, netconf.Host) (netconf.Report, error) {
	return netconf.Report{}, u.Why
}
