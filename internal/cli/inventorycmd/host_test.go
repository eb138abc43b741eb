package inventorycmd

import (
	"testing"

	"github.com/vdc-project/vdc/api"
)

func TestHostState(t *testing.T) {
	h := &api.Host{Status: api.HostStatus{Connection: api.HostConnected, Driver: "qemu", Accel: "kvm"}}
	if got := hostState(h); got != "connected" {
		t.Errorf("hostState = %q", got)
	}
	h.Spec.Maintenance = true
	if got := hostState(h); got != "connected (maintenance)" {
		t.Errorf("hostState in maintenance = %q", got)
	}
}
