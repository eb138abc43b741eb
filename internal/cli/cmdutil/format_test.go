package cmdutil

import (
	"testing"

	"github.com/vdc-project/vdc/api"
)

func TestHostDriver(t *testing.T) {
	h := &api.Host{Status: api.HostStatus{Connection: api.HostConnected, Driver: "qemu", Accel: "kvm"}}
	if got := HostDriver(h); got != "qemu (kvm)" {
		t.Errorf("HostDriver = %q", got)
	}
	h.Status.Driver, h.Status.Accel = "sim", "sim"
	if got := HostDriver(h); got != "sim" {
		t.Errorf("HostDriver for sim = %q, want no repeat", got)
	}
}

func TestHostAccelSaysWhyNotKVM(t *testing.T) {
	h := &api.Host{Status: api.HostStatus{Driver: "qemu", Accel: "tcg", AccelReason: "open /dev/kvm: no such file or directory"}}
	if got, want := HostAccel(h), "qemu under TCG (software emulation; KVM not used: open /dev/kvm: no such file or directory)"; got != want {
		t.Errorf("HostAccel = %q, want %q", got, want)
	}
	h.Status.Accel, h.Status.AccelReason = "kvm", ""
	if got := HostAccel(h); got != "qemu under KVM" {
		t.Errorf("HostAccel under KVM = %q", got)
	}
}
