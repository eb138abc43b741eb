package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
)

// image build-test finds out there is no client config before it builds
// anything (which takes a while).
func TestBuildTestChecksTheConfigFirst(t *testing.T) {
	dir := t.TempDir()
	cache := filepath.Join(dir, "cache")
	out, err := runCaptured(filepath.Join(dir, "missing.json"), "image", "build-test", "--cache", cache)
	if err == nil || !strings.Contains(out, "no client config at "+filepath.Join(dir, "missing.json")) {
		t.Fatalf("want an error about the missing client config, got %v:\n%s", err, out)
	}
	if strings.Contains(out, "building") {
		t.Errorf("it started building before finding there is no client config:\n%s", out)
	}
	if _, err := os.Stat(cache); !os.IsNotExist(err) {
		t.Errorf("the build's cache was made: %v", err)
	}
}

func TestHostAccelSaysWhyNotKVM(t *testing.T) {
	h := &api.Host{Status: api.HostStatus{Driver: "qemu", Accel: "tcg", AccelReason: "open /dev/kvm: no such file or directory"}}
	if got, want := hostAccel(h), "qemu under TCG (software emulation; KVM not used: open /dev/kvm: no such file or directory)"; got != want {
		t.Errorf("hostAccel = %q, want %q", got, want)
	}
	h.Status.Accel, h.Status.AccelReason = "kvm", ""
	if got := hostAccel(h); got != "qemu under KVM" {
		t.Errorf("hostAccel under KVM = %q", got)
	}
}

// Hosts of vdc up with real VMs share the machine: together they offer
// no more memory than it has; what the user gives is checked against it.
func TestUpHostsShareTheMachine(t *testing.T) {
	cpus, mem := qemu.MachineCapacity()
	var c capacityFlags
	if err := c.share("qemu", 3); err != nil {
		t.Fatal(err)
	}
	m, err := api.ParseSize(c.memory)
	if err != nil || 3*int64(m) > mem || int64(m) < mem/3-3 || c.cpus < 1 || c.cpus > cpus {
		t.Fatalf("each of 3 hosts offers %d CPUs and %s (%v); the machine has %d and %s", c.cpus, c.memory, err, cpus, api.Size(mem))
	}
	if !strings.Contains(c.note, "shared by 3 hosts") {
		t.Errorf("the note does not say how: %q", c.note)
	}
	for _, bad := range []capacityFlags{{cpus: cpus + 1}, {memory: api.Size(mem + 1<<30).String()}, {memory: "lots"}, {cpus: -1}} {
		if err := bad.share("qemu", 3); err == nil {
			t.Errorf("capacity %+v beyond the machine was taken", bad)
		}
	}
	sim := capacityFlags{}
	if err := sim.share("sim", 3); err != nil || sim.args() != nil {
		t.Errorf("simulated hosts are their own machines: %v %v", err, sim.args())
	}
}
