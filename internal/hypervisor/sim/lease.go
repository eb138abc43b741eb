package sim

import (
	"context"
	"fmt"
	"os"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/lease"
)

var _ hypervisor.Leaser = (*Driver)(nil)

// A simulated VM has no process to hand its lease to: the driver holds
// the lock itself, from start (or the switch-over of a migration) until
// the VM turns off or leaves. The lock is real, so simulated hosts keep a
// VM from running twice exactly as real ones do; it goes with the agent
// process, and a restarted agent takes it again for the VMs still on.

// takeLease makes v hold the lease at path instead of the one it holds;
// the caller holds mu.
func (d *Driver) takeLease(v *vm, path string) error {
	if path == v.leasePath && (path == "" || v.lease != nil) {
		return nil
	}
	var f *os.File
	if path != "" {
		var err error
		if f, err = lease.Acquire(path, fmt.Sprintf("vm %s on host %s", v.rec.Config.Name, d.host)); err != nil {
			return fmt.Errorf("vm %s cannot run here: %w", v.rec.Config.Name, err)
		}
	}
	if v.lease != nil {
		v.lease.Close()
	}
	v.lease, v.leasePath = f, path
	return nil
}

// syncLease lets go of v's lease once v no longer runs here; the caller
// holds mu.
func (d *Driver) syncLease(v *vm) {
	if v.lease == nil {
		return
	}
	if _, here := d.vms[v.rec.Config.ID]; here && v.rec.Power != hypervisor.StateOff && v.rec.SentAt.IsZero() && !v.incoming {
		return
	}
	v.lease.Close()
	v.lease, v.leasePath = nil, ""
}

// HoldLease makes a VM that is on hold the lease at path (none if empty).
func (d *Driver) HoldLease(ctx context.Context, id, path string) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("hold the lease of vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fmt.Errorf("hold the lease of vm %q: %w", id, err)
	}
	if v.rec.Power == hypervisor.StateOff || v.incoming || !v.rec.SentAt.IsZero() {
		return fmt.Errorf("hold the lease of vm %q: it does not run here: %w", id, hypervisor.ErrWrongState)
	}
	return d.takeLease(v, path)
}

// Lease is the path of the lease the VM holds, if any.
func (d *Driver) Lease(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, ok := d.vms[id]; ok && v.lease != nil {
		return v.leasePath
	}
	return ""
}
