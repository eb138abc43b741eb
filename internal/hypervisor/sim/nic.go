package sim

import (
	"context"
	"fmt"
	"slices"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

var _ hypervisor.NICs = (*Driver)(nil)

// The NIC model: a running VM takes a hot-plugged NIC into a hot-plug
// slot, lets go of one in a slot or in a root port of its own (the
// hardware it started with says which), keeps a NIC's backing (NAT or
// its tap) while it runs, and records the link state: what QEMU does,
// without the devices.

// nicOp runs a change of a VM's NICs under mu and saves it.
func (d *Driver) nicOp(ctx context.Context, op, id string, change func(rec *record) error) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	if err := v.notReceiving(); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	rec := v.rec
	rec.Config.NICs = slices.Clone(rec.Config.NICs)
	if err := change(&rec); err != nil {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	return d.commit(v, rec)
}

// AddNIC adds a NIC; a running VM needs a hot-plug slot for it.
func (d *Driver) AddNIC(ctx context.Context, id string, n hypervisor.NICConfig) error {
	return d.nicOp(ctx, "add a NIC to", id, func(rec *record) error {
		if hypervisor.NICIndex(rec.Config, n.Name) >= 0 {
			return fmt.Errorf("it has a NIC %q: %w", n.Name, hypervisor.ErrInvalid)
		}
		if rec.Power != hypervisor.StateOff && n.Slot == "" {
			return fmt.Errorf("%s: a NIC hot-plugged into a running VM needs a hot-plug slot: %w", n.Name, hypervisor.ErrInvalid)
		}
		rec.Config.NICs = append(rec.Config.NICs, n)
		return nil
	})
}

// UpdateNIC changes a NIC's port group and link; a running VM's keeps its
// backing, model and MAC.
func (d *Driver) UpdateNIC(ctx context.Context, id string, n hypervisor.NICConfig) error {
	return d.nicOp(ctx, "update a NIC of", id, func(rec *record) error {
		i := hypervisor.NICIndex(rec.Config, n.Name)
		if i < 0 {
			return fmt.Errorf("no NIC %q: %w", n.Name, hypervisor.ErrInvalid)
		}
		old := rec.Config.NICs[i]
		n.Slot = old.Slot
		if rec.Power != hypervisor.StateOff {
			if err := hypervisor.CheckNICUpdate(rec.Config.Name, old, n); err != nil {
				return err
			}
		}
		rec.Config.NICs[i] = n
		return nil
	})
}

// RemoveNIC drops a NIC; a running VM lets go only of one it can unplug.
func (d *Driver) RemoveNIC(ctx context.Context, id, name string) error {
	return d.nicOp(ctx, "remove a NIC of", id, func(rec *record) error {
		i := hypervisor.NICIndex(rec.Config, name)
		if i < 0 {
			return fmt.Errorf("no NIC %q: %w", name, hypervisor.ErrInvalid)
		}
		if rec.Power != hypervisor.StateOff && !hypervisor.Unpluggable(rec.Config.NICs[i], rec.hardware().NICPorts) {
			return fmt.Errorf("%s sits on the machine's root bus, which takes no hot-unplug; stop the VM to remove it: %w", name, hypervisor.ErrWrongState)
		}
		rec.Config.NICs = slices.Delete(rec.Config.NICs, i, i+1)
		return nil
	})
}

// NICs returns the VM's NICs as the driver has them.
func (d *Driver) NICs(id string) ([]hypervisor.NICConfig, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return nil, err
	}
	return slices.Clone(v.rec.Config.NICs), nil
}
