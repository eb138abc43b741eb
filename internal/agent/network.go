package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/network"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netconf"
)

// startNetwork starts converging the host's networks: at once to the
// desired network saved before a restart (so that nothing waits for the
// server), then to every one the server sends.
func (a *Agent) startNetwork(ctx context.Context) error {
	backends := a.cfg.Networks
	if backends == nil {
		info, err := a.cfg.Driver.Info(ctx)
		if err != nil {
			return fmt.Errorf("read host info from driver: %w", err)
		}
		backends = defaultBackends(info.Driver, a.log)
		if info.Driver != "sim" {
			if err := lockNetNS(); err != nil {
				a.log.Warn("this host's switches cannot be realized", "err", err)
				backends = map[string]netconf.Backend{api.BackendBridge: network.Unavailable{Why: err}}
			}
		}
	}
	a.net = network.New(a.cfg.DataDir, backends, a.vms.Configs, a.log, a.changed)
	a.vms.BeforeStart = a.net.Ensure
	go a.net.Run(ctx)
	return nil
}

// defaultBackends are a host's switch backends: the sim driver's
// accounting on a sim host, else the real ones.
func defaultBackends(driver string, log *slog.Logger) map[string]netconf.Backend {
	if driver == "sim" {
		return map[string]netconf.Backend{"sim": &network.Sim{}}
	}
	return realBackends(log)
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
func plugNICs(cfg *hypervisor.VMConfig) { network.PlugNICs(cfg) }

// lockNetNS makes this agent the only one that manages the network
// namespace it runs in (two would remove each other's devices): a lock
// on a file named for the namespace, held while the process lives.
func lockNetNS() error {
	st, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("find this process's network namespace: %w", err)
	}
	ino := st.Sys().(*syscall.Stat_t).Ino
	dir := "/run/vdc"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("netns-%d.lock", ino))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock network namespace net:[%d]: %w", ino, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("network namespace net:[%d] is managed by another vdc agent (lock %s): run each host in its own network namespace, as vdc up does as root", ino, path)
	}
	netnsLock = f // held until the process exits
	return nil
}

var netnsLock *os.File
