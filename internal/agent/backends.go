package agent

import "github.com/vdc-project/vdc/internal/netconf"

// realBackends are the switch backends of a host that runs real VMs.
func realBackends() map[string]netconf.Backend {
	return map[string]netconf.Backend{}
}
