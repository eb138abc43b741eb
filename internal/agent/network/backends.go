package network

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/bridge"
	"github.com/vdc-project/vdc/internal/netconf/ovs"
	"github.com/vdc-project/vdc/internal/netconf/policy"
)

// Backends are the switch backends of a host whose VMs run on driver:
// the sim driver's accounting, else the real ones in the agent's network
// namespace, which the agent must have to itself. A backend that cannot
// start stands in as Unavailable, so that its switches say why.
func Backends(driver, dataDir string, log *slog.Logger) map[string]netconf.Backend {
	if driver == "sim" {
		return map[string]netconf.Backend{"sim": &Sim{}}
	}
	if err := lockNetNS(); err != nil {
		log.Warn("this host's switches cannot be realized", "err", err)
		return map[string]netconf.Backend{api.BackendBridge: Unavailable{Why: err}, api.BackendOVS: Unavailable{Why: err}}
	}
	out := map[string]netconf.Backend{}
	if b, err := bridge.New(bridge.Options{Logger: log, Policy: policy.Enforcer{Log: log}}); err != nil {
		log.Warn("no bridge switch backend on this host", "err", err)
		out[api.BackendBridge] = Unavailable{Why: fmt.Errorf("the bridge backend cannot start: %w", err)}
	} else {
		out[api.BackendBridge] = b
	}
	if _, err := exec.LookPath("ovs-vswitchd"); err != nil {
		out[api.BackendOVS] = Unavailable{Why: errors.New("Open vSwitch is not installed (apt-get install openvswitch-switch)")}
	} else if o, err := ovs.New(ovs.Options{Dir: filepath.Join(dataDir, "ovs"), Logger: log}); err != nil {
		log.Warn("no ovs switch backend on this host", "err", err)
		out[api.BackendOVS] = Unavailable{Why: fmt.Errorf("the ovs backend cannot start: %w", err)}
	} else {
		out[api.BackendOVS] = o
	}
	return out
}

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
