package cli

import (
	"testing"

	"github.com/vdc-project/vdc/api"
)

func TestHostStateAndDriver(t *testing.T) {
	h := &api.Host{Status: api.HostStatus{Connection: api.HostConnected, Driver: "qemu", Accel: "kvm"}}
	if got := hostState(h); got != "connected" {
		t.Errorf("hostState = %q", got)
	}
	h.Spec.Maintenance = true
	if got := hostState(h); got != "connected (maintenance)" {
		t.Errorf("hostState in maintenance = %q", got)
	}
	if got := hostDriver(h); got != "qemu (kvm)" {
		t.Errorf("hostDriver = %q", got)
	}
	h.Status.Driver, h.Status.Accel = "sim", "sim"
	if got := hostDriver(h); got != "sim" {
		t.Errorf("hostDriver for sim = %q, want no repeat", got)
	}
}
