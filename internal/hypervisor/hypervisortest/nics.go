package hypervisortest

import (
	"testing"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// RunNICs runs the NIC conformance suite (hypervisor.NICs) with NAT NICs
// (no tap needed): a VM starts with a NIC whose link is down, takes a NIC
// hot-plugged into a hot-plug slot, has its link set while it runs,
// refuses what a running VM cannot do (another backend, a second NIC of a
// name), and lets go of NICs while it is off, with the errors callers
// rely on. Unplugging from a running VM needs the guest's cooperation:
// drivers test it with a real guest.
func RunNICs(t *testing.T, h Harness) {
	if h.Timeout <= 0 {
		h.Timeout = DefaultTimeout
	}
	e := newEnv(t, h)
	nics, ok := e.d.(hypervisor.NICs)
	if !ok {
		t.Skip("the driver does not implement hypervisor.NICs")
	}
	cfg := e.config("nics")
	cfg.NICs = []hypervisor.NICConfig{{Name: "nic0", MAC: "52:54:00:5e:00:01", Model: "virtio", LinkDown: true}}
	e.ok(e.d.Define(e.ctx(), cfg), "define a VM with a NIC whose link is down")
	e.ok(e.d.Start(e.ctx(), cfg.ID), "start it")
	e.expect(cfg.ID, hypervisor.StateOn)

	nic1 := hypervisor.NICConfig{Name: "nic1", MAC: "52:54:00:5e:00:02", Model: "virtio", Slot: "hp0"}
	e.ok(nics.AddNIC(e.ctx(), cfg.ID, nic1), "hot-plug nic1 into the running VM")
	e.is(nics.AddNIC(e.ctx(), cfg.ID, nic1), hypervisor.ErrInvalid, "add a second nic1")
	nic1.LinkDown = true
	e.ok(nics.UpdateNIC(e.ctx(), cfg.ID, nic1), "set nic1's link down while it runs")
	nic1.LinkDown = false
	e.ok(nics.UpdateNIC(e.ctx(), cfg.ID, nic1), "set nic1's link up again")
	onTap := nic1
	onTap.Tap = "vttest0000n1"
	e.is(nics.UpdateNIC(e.ctx(), cfg.ID, onTap), hypervisor.ErrWrongState, "move running nic1 from NAT to a tap")
	other := nic1
	other.Model = "e1000"
	e.is(nics.UpdateNIC(e.ctx(), cfg.ID, other), hypervisor.ErrWrongState, "change running nic1's model")
	e.is(nics.UpdateNIC(e.ctx(), cfg.ID, hypervisor.NICConfig{Name: "nic9"}), hypervisor.ErrInvalid, "update a NIC the VM lacks")
	e.is(nics.RemoveNIC(e.ctx(), cfg.ID, "nic9"), hypervisor.ErrInvalid, "remove a NIC the VM lacks")

	e.ok(e.d.PowerOff(e.ctx(), cfg.ID), "power off")
	e.ok(nics.UpdateNIC(e.ctx(), cfg.ID, onTap), "move nic1 from NAT to a tap while off")
	e.ok(nics.RemoveNIC(e.ctx(), cfg.ID, "nic1"), "remove nic1 while off")
	e.is(nics.RemoveNIC(e.ctx(), cfg.ID, "nic1"), hypervisor.ErrInvalid, "remove nic1 twice")
	e.ok(nics.AddNIC(e.ctx(), cfg.ID, hypervisor.NICConfig{Name: "nic1", MAC: "52:54:00:5e:00:03", Model: "e1000"}), "add nic1 again while off, no slot")
	e.ok(e.d.Start(e.ctx(), cfg.ID), "start with nic0 and the new nic1")
	e.expect(cfg.ID, hypervisor.StateOn)
	e.is(nics.AddNIC(e.ctx(), "nope", nic1), hypervisor.ErrNotFound, "add a NIC to an unknown VM")
}
