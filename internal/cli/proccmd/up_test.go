package proccmd

import (
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
)

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
