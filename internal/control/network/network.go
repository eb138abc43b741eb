// Package network is the distributed virtual switch on the server side:
// switches and port groups checked and made (defined once per cluster),
// the desired network of each host computed from them (its switches,
// their port groups, the VXLAN flood lists of the other hosts' tunnel
// addresses) and sent in the answer to a heartbeat whose host realized
// another version, and each switch's realization per host, from what the
// hosts report. The hosts' agents converge by themselves (internal/netconf).
package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sort"
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
)

// Deps are what the service works with.
type Deps struct {
	State *state.State
	Inv   *inventory.Inventory
}

// Service makes switches and port groups and tells hosts their network.
type Service struct {
	d Deps
	// mu makes check-then-commit of VNI and VLAN uniqueness atomic among
	// this server's requests (Lock, Unlock around a create or update).
	mu sync.Mutex
}

func New(d Deps) *Service { return &Service{d: d} }

// Lock serializes the changes of switches and port groups: hold it from
// the checks of a create or update to its commit.
func (s *Service) Lock() func() {
	s.mu.Lock()
	return s.mu.Unlock
}

// Subscribe answers heartbeats whose host realized another version of
// its desired network than the current one.
func (s *Service) Subscribe(b *hosts.Bus) (cancel func()) {
	return hosts.On(b, func(_ context.Context, e hosts.NetworkSettings) error {
		if want := Desired(s.d.State, e.Host); want.Gen != e.Gen {
			e.Reply.Network = want
		}
		return nil
	})
}

// Desired is host h's network: the switches of its cluster with their
// port groups, each VXLAN one's flood list holding the tunnel addresses
// of the cluster's other hosts.
func Desired(st *state.State, h *api.Host) *api.HostNetwork {
	cluster := h.Spec.Cluster.ID
	var peers []string
	state.Each(st, func(o *api.Host) {
		if o.Spec.Cluster.ID == cluster && o.Metadata.ID != h.Metadata.ID && o.Status.TunnelAddress != "" {
			peers = append(peers, o.Status.TunnelAddress)
		}
	})
	sort.Strings(peers)
	pgs := map[string][]*api.PortGroup{}
	state.Each(st, func(pg *api.PortGroup) {
		if !pg.Spec.Switch.IsZero() {
			pgs[pg.Spec.Switch.ID] = append(pgs[pg.Spec.Switch.ID], pg)
		}
	})
	want := &api.HostNetwork{Switches: []api.HostSwitch{}}
	state.Each(st, func(sw *api.Switch) {
		if sw.Spec.Cluster.ID != cluster {
			return
		}
		hs := api.HostSwitch{ID: sw.Metadata.ID, Name: sw.Metadata.Name, Backend: sw.Spec.Backend, MTU: sw.Spec.MTU,
			Uplinks: sw.Spec.Uplinks, LocalIP: h.Status.TunnelAddress, PortGroups: []api.HostPortGroup{}}
		for _, pg := range pgs[sw.Metadata.ID] {
			hp := api.HostPortGroup{ID: pg.Metadata.ID, Name: pg.Metadata.Name, VNI: pg.Spec.VNI, VLAN: pg.Spec.VLAN,
				Isolated: pg.Spec.Isolated, Security: pg.Spec.Security, Shaping: pg.Spec.Shaping, DHCP: pg.Spec.DHCP}
			if pg.Spec.VNI != 0 {
				hp.Peers = peers
			}
			hs.PortGroups = append(hs.PortGroups, hp)
		}
		sort.Slice(hs.PortGroups, func(i, j int) bool { return hs.PortGroups[i].ID < hs.PortGroups[j].ID })
		want.Switches = append(want.Switches, hs)
	})
	sort.Slice(want.Switches, func(i, j int) bool { return want.Switches[i].ID < want.Switches[j].ID })
	want.Gen = gen(want)
	return want
}

// gen is a version of a desired network: a hash of what it holds.
func gen(n *api.HostNetwork) string {
	b, err := json.Marshal(n.Switches)
	if err != nil {
		panic("network: marshal a host's desired network: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// Realization is switch sw's state on each host of its cluster, from
// what they reported: pending while a host has not realized the current
// version of its desired network.
func Realization(st *state.State, sw *api.Switch) []api.SwitchHost {
	out := []api.SwitchHost{}
	for _, h := range state.List(st, func(h *api.Host) bool { return h.Spec.Cluster.ID == sw.Spec.Cluster.ID }) {
		sh := api.SwitchHost{Host: api.Ref{ID: h.Metadata.ID, Name: h.Metadata.Name}, State: api.RealizedPending}
		if h.Status.Connection != api.HostConnected {
			sh.Reason = "host " + h.Status.Connection
		} else if h.Status.NetworkGen == Desired(st, h).Gen {
			sh.State = api.RealizedOK
			i := slices.IndexFunc(h.Status.Networks, func(r api.SwitchReport) bool { return r.Switch == sw.Metadata.ID })
			switch {
			case i < 0:
				sh.State, sh.Reason = api.RealizedPending, "not reported"
			case h.Status.Networks[i].Error != "":
				sh.State, sh.Reason = api.RealizedError, h.Status.Networks[i].Error
			default:
				sh.PortGroups = problems(st, h.Status.Networks[i].PortGroups)
				if len(sh.PortGroups) > 0 {
					sh.State, sh.Reason = api.RealizedError, "some port groups are not realized"
				}
			}
		}
		out = append(out, sh)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host.Name < out[j].Host.Name })
	return out
}

func problems(st *state.State, pgs map[string]string) []api.PortGroupProblem {
	var out []api.PortGroupProblem
	for id, why := range pgs {
		ref := api.Ref{ID: id}
		if pg, ok := state.Get[*api.PortGroup](st, id); ok {
			ref.Name = pg.Metadata.Name
		}
		out = append(out, api.PortGroupProblem{PortGroup: ref, Reason: why})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PortGroup.Name < out[j].PortGroup.Name })
	return out
}

// PortGroups counts a switch's port groups.
func PortGroups(st *state.State, sw *api.Switch) int {
	return len(state.List(st, func(pg *api.PortGroup) bool { return pg.Spec.Switch.ID == sw.Metadata.ID }))
}
