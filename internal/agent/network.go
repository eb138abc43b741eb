package agent

import (
	"context"
	"fmt"
	"net"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/network"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/bridge"
)

// startNetwork starts converging the host's networks: at once to the
// desired network saved before a restart (so that nothing waits for the
// server), then to every one the server sends.
func (a *Agent) startNetwork(ctx context.Context) {
	backends := a.cfg.Networks
	if backends == nil {
		info, err := a.cfg.Driver.Info(ctx)
		if err != nil {
			// The agent runs on (its VMs need it); the switches say why not.
			err = fmt.Errorf("read host info from driver: %w", err)
			a.log.Warn("this host's switches cannot be realized", "err", err)
			backends = map[string]netconf.Backend{api.BackendBridge: network.Unavailable{Why: err}, api.BackendOVS: network.Unavailable{Why: err}}
		} else {
			backends = network.Backends(info.Driver, a.cfg.DataDir, a.log)
		}
	}
	a.net = network.New(a.cfg.DataDir, backends, a.vms.Configs, a.log, a.changed)
	a.vms.BeforeStart = a.net.Ensure
	go a.net.Run(ctx)
	if _, ok := backends[api.BackendBridge].(*bridge.Backend); ok { // real, and this host's alone
		a.net.EnableDHCP()
		go a.net.WatchUplinks(ctx, a.cfg.Name, a.tunnelAddress)
	}
}

// vmsChanged is told of every change of the VMs' states: the server
// hears of it, and the ports of VMs that came or went follow.
func (a *Agent) vmsChanged() {
	a.changed()
	if a.net != nil {
		a.net.Changed()
	}
}

// tunnelAddress is this host's end of its switches' VXLAN tunnels.
func (a *Agent) tunnelAddress() string {
	if a.cfg.TunnelAddress != "" {
		return a.cfg.TunnelAddress
	}
	host, _, err := net.SplitHostPort(a.addr)
	if err != nil {
		return ""
	}
	return host
}

// plugNICs names the taps of a VM's NICs on switches, before it is
// defined or received.
func (a *Agent) plugNICs(cfg *hypervisor.VMConfig) { a.net.PlugNICs(cfg) }
