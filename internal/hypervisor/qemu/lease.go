package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/lease"
	"github.com/vdc-project/vdc/internal/qmp"
)

// leaseFD is the name QEMU keeps the VM's lease file under (getfd).
const leaseFD = "vdc-lease"

// takeLease makes the running QEMU hold the VM's lease at path, in place
// of the one it held: the agent takes the lock, passes the open file to
// QEMU, and closes its own copy. From then on the lock lasts exactly as
// long as the QEMU process, whatever happens to the agent.
func (v *vm) takeLease(ctx context.Context, path string) error {
	v.mu.Lock()
	q, cur := v.qmp, v.lease
	v.mu.Unlock()
	if path == cur {
		return nil
	}
	if q == nil {
		return fmt.Errorf("take the lease of vm %s: it has no running QEMU: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	if path == "" {
		return v.dropLease(ctx)
	}
	f, err := v.acquireLease(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return v.handLease(ctx, q, f, path)
}

// launchHolding runs a QEMU that holds the VM's lease, for a start that
// must not run the guest yet (-S, -incoming): the lease is taken first,
// so that no QEMU process starts at all while another copy runs.
func (v *vm) launchHolding(ctx context.Context, hw api.VMHardware, extra []string) error {
	f, err := v.acquireLease(v.cfg.Lease)
	if err != nil {
		return err // it names the VM and the holder
	}
	if f == nil {
		return v.launch(ctx, hw, extra)
	}
	defer f.Close()
	if err := v.launch(ctx, hw, extra); err != nil {
		return err
	}
	v.mu.Lock()
	q := v.qmp
	v.mu.Unlock()
	if err := v.handLease(ctx, q, f, v.cfg.Lease); err != nil {
		v.kill()
		return err
	}
	return nil
}

// acquireLease takes the lease at path for this VM (nil when path is
// empty); the caller hands it to QEMU, then closes its copy.
func (v *vm) acquireLease(path string) (*os.File, error) {
	if path == "" {
		return nil, nil
	}
	f, err := lease.Acquire(path, fmt.Sprintf("vm %s on host %s", v.cfg.Name, v.d.opt.Host))
	if err != nil {
		return nil, fmt.Errorf("vm %s cannot run here: %w", v.cfg.Name, err)
	}
	return f, nil
}

// handLease passes the lease file to QEMU. getfd under a name already in
// use closes the old file: an old lease goes once the new one is held.
func (v *vm) handLease(ctx context.Context, q *qmp.Client, f *os.File, path string) error {
	if err := q.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": leaseFD}, nil, f); err != nil {
		return fmt.Errorf("hand the lease of vm %s to QEMU: %w", v.cfg.Name, err)
	}
	v.setLease(path)
	return nil
}

// dropLease makes QEMU let go of the VM's lease: its state went to
// another host (a completed migration).
func (v *vm) dropLease(ctx context.Context) error {
	v.mu.Lock()
	q, cur := v.qmp, v.lease
	v.mu.Unlock()
	if cur == "" || q == nil {
		return nil
	}
	err := q.Execute(ctx, "closefd", map[string]string{"fdname": leaseFD}, nil)
	var qe *qmp.Error
	if err != nil && !errors.As(err, &qe) { // a QMP error: it held none
		return fmt.Errorf("release the lease of vm %s: %w", v.cfg.Name, err)
	}
	v.setLease("")
	return nil
}

func (v *vm) setLease(path string) {
	v.mu.Lock()
	v.lease = path
	v.mu.Unlock()
	v.save()
}

// HoldLease makes a running VM hold the lease at path (none if empty), in
// place of the one it holds.
func (d *Driver) HoldLease(ctx context.Context, id, path string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	// A copy being received takes it when it runs; a source whose state
	// went to its target must not take it back behind its back.
	if v.isIncoming() || v.migratedOut(ctx) {
		return fmt.Errorf("hold the lease of vm %s: it is migrating: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	return v.takeLease(ctx, path)
}

// migratedOut says whether QEMU has sent the VM's state away: it stays
// paused until it is released, or taken back.
func (v *vm) migratedOut(ctx context.Context) bool {
	var st struct {
		Status string `json:"status"`
	}
	return v.query(ctx, "query-status", &st) == nil && (st.Status == "postmigrate" || st.Status == "finish-migrate")
}

// Lease is the path of the lease the VM's QEMU holds, if any.
func (d *Driver) Lease(id string) string {
	v, err := d.get(id)
	if err != nil {
		return ""
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.lease
}
