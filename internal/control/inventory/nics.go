package inventory

import (
	"fmt"
	"path"

	"github.com/vdc-project/vdc/api"
)

// HotplugSlots is how many spare PCIe root ports a VM has for the disks
// and NICs plugged in while it runs (the qemu driver makes them hp0..hp3).
const HotplugSlots = 4

// SlotClaim is the claim on a VM's hot-plug slot that a task plugging a
// device into it holds until the device is recorded.
func SlotClaim(vmID, slot string) string { return VMClaim(vmID, "slots", slot) }

// NICClaim is the claim on a new NIC's name.
func NICClaim(vmID, name string) string { return VMClaim(vmID, "nics", name) }

// IPClaim is the claim on a port group's address that a task giving it
// to a NIC holds until the NIC is recorded (NICAddress skips it).
func IPClaim(portGroupID, ip string) string { return "ips/" + portGroupID + "/" + ip }

// MACClaim is the claim on a MAC address a task gives a new NIC.
func MACClaim(mac string) string { return "macs/" + mac }

// FreeSlot picks a hot-plug slot that no disk of the VM (or of one of its
// snapshots, which a revert brings back), no NIC of it and no unfinished
// task holds; "" when all are taken.
func (in *Inventory) FreeSlot(vm *api.VM) string {
	used := map[string]bool{}
	for c := range in.PendingClaims(SlotClaim(vm.Metadata.ID, "")) {
		used[path.Base(c)] = true
	}
	for _, d := range VMFiles(vm) {
		used[d.Slot] = true
	}
	for _, n := range vm.Spec.NICs {
		used[n.Slot] = true
	}
	for i := 0; i < HotplugSlots; i++ {
		if s := fmt.Sprintf("hp%d", i); !used[s] {
			return s
		}
	}
	return ""
}

// NotChangingNICs refuses what must not overlap a change of the VM's
// NICs (a migration: its target is built with the NICs the VM has when it
// starts).
func (in *Inventory) NotChangingNICs(vm *api.VM) error {
	var busy error
	in.St.Cache.Each(api.KindTask, func(o api.Object) {
		t := o.(*api.Task)
		if t.Target.ID != vm.Metadata.ID || api.TaskDone(t.State) {
			return
		}
		switch t.Op {
		case api.OpNICAdd, api.OpNICRemove, api.OpNICUpdate:
			busy = api.Errorf(api.ErrConflict, "vm %s is having its NICs changed (task %s, %s)", vm.Metadata.Name, t.Metadata.ID, t.Op)
		}
	})
	return busy
}
