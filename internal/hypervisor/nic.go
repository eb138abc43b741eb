package hypervisor

import (
	"context"
	"fmt"
	"slices"
)

// NICs is implemented by drivers that add, change and remove a VM's
// network adapters, on running VMs too. The agent makes and attaches a
// NIC's tap (NICConfig.Tap) before AddNIC and UpdateNIC, and removes it
// after RemoveNIC.
type NICs interface {
	// AddNIC adds a NIC (its name unused by the VM) and, when the VM
	// runs, hot-plugs it into the hot-plug root port n.Slot, its link
	// down if n.LinkDown.
	AddNIC(ctx context.Context, id string, n NICConfig) error
	// UpdateNIC changes the NIC named n.Name to n: its link state, live;
	// its port group, which needs no change of the hypervisor's while
	// the NIC keeps its backing (the same tap, or NAT for NAT). A change
	// of backing (NAT to a tap, or back), model or MAC of a running VM's
	// NIC is ErrWrongState.
	UpdateNIC(ctx context.Context, id string, n NICConfig) error
	// RemoveNIC removes a NIC; from a running VM it is unplugged once the
	// guest let go of it. A NIC that cannot be unplugged (one on the
	// machine's root bus) is ErrWrongState.
	RemoveNIC(ctx context.Context, id, name string) error
}

// NICIndex is the index of the NIC named name in cfg (-1 if none).
func NICIndex(cfg VMConfig, name string) int {
	return slices.IndexFunc(cfg.NICs, func(n NICConfig) bool { return n.Name == name })
}

// CheckNICUpdate says whether a running VM's NIC old can become n
// without being unplugged: same model, MAC and backing.
func CheckNICUpdate(vm string, old, n NICConfig) error {
	switch {
	case old.Model != n.Model || old.MAC != n.MAC:
		return fmt.Errorf("%s of vm %s: its model and MAC change only by removing it and adding another: %w", n.Name, vm, ErrWrongState)
	case (old.Tap == "") != (n.Tap == ""):
		return fmt.Errorf("%s of vm %s: a NIC moves between a NAT port group and a switch's only while the VM is off (QEMU would need another backend for it): %w", n.Name, vm, ErrWrongState)
	case old.Tap != n.Tap:
		return fmt.Errorf("%s of vm %s: its tap would change from %s to %s while the VM runs: %w", n.Name, vm, old.Tap, n.Tap, ErrWrongState)
	}
	return nil
}

// Unpluggable says whether a running VM can let go of NIC n: one in a
// hot-plug slot, or in a root port of its own (ports: the NICs that had
// one when the VM started, api.VMHardware.NICPorts).
func Unpluggable(n NICConfig, ports []string) bool {
	return n.Slot != "" || slices.Contains(ports, n.Name)
}
