package agent

import (
	"log/slog"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/bridge"
	"github.com/vdc-project/vdc/internal/netconf/policy"
)

// realBackends are the switch backends of a host that runs real VMs, in
// the agent's network namespace; one that cannot start is left out (its
// switches report that the host lacks it) and logged.
func realBackends(log *slog.Logger) map[string]netconf.Backend {
	out := map[string]netconf.Backend{}
	b, err := bridge.New(bridge.Options{Logger: log, Policy: policy.Enforcer{Log: log}})
	if err != nil {
		log.Warn("no bridge switch backend on this host", "err", err)
	} else {
		out[api.BackendBridge] = b
	}
	return out
}
