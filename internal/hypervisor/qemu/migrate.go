package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
)

var _ hypervisor.Migrator = (*Driver)(nil)
var _ hypervisor.Discarder = (*Driver)(nil)

// forget drops a VM from the driver and removes its runtime files (not
// its disks).
func (v *vm) forget() {
	v.release()
	if v.p.Run != v.p.Dir {
		_ = os.RemoveAll(v.p.Run)
	}
	for _, f := range []string{v.p.StateFile(), v.p.PIDFile()} {
		_ = os.Remove(f)
	}
	v.d.mu.Lock()
	if v.d.vms[v.cfg.ID] == v {
		delete(v.d.vms, v.cfg.ID)
	}
	v.d.mu.Unlock()
}

// MigrationStatus reports the VM's current or last migration out.
func (d *Driver) MigrationStatus(ctx context.Context, id string) (hypervisor.MigrationStatus, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.MigrationStatus{}, err
	}
	v.mu.Lock()
	m := v.mig
	v.mu.Unlock()
	if m == nil {
		return v.qemuMigrationStatus(ctx)
	}
	return m.Get(), nil
}

// qemuMigrationStatus reads the state of a migration this driver did not
// start (the agent that started it restarted) from QEMU itself.
func (v *vm) qemuMigrationStatus(ctx context.Context) (hypervisor.MigrationStatus, error) {
	var q migration.Query
	if err := v.query(ctx, "query-migrate", &q); err != nil {
		return hypervisor.MigrationStatus{}, fmt.Errorf("read the migration of vm %s: %w", v.cfg.Name, err)
	}
	var st hypervisor.MigrationStatus
	q.Into(&st)
	switch q.Status {
	case "", "none":
		st.State = hypervisor.MigrationNone
	case "completed":
		// Disk copies that went along end as the agent that started them
		// would have ended them: in step with the target.
		if err := v.adoptMirrors(ctx); err != nil {
			return st, err
		}
		if err := v.finishMirrors(ctx, false); err != nil {
			return st, fmt.Errorf("finish the disk copies of vm %s: %w", v.cfg.Name, err)
		}
		if err := v.dropLease(ctx); err != nil {
			return st, err
		}
		st.State = hypervisor.MigrationCompleted
	case "failed":
		st.State, st.Error = hypervisor.MigrationFailed, q.ErrorDesc
	case "cancelled", "cancelling":
		st.State = hypervisor.MigrationCancelled
	default:
		st.State = hypervisor.MigrationActive
	}
	return st, nil
}

// CancelMigration stops a migration out; the VM goes on running here.
func (d *Driver) CancelMigration(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	m := v.mig
	v.mu.Unlock()
	if m != nil && m.Get().State == hypervisor.MigrationCompleted {
		// The target never took over: run here again. QEMU re-activates
		// the disks it handed over (the mirrors, if any, never pivoted).
		// The lease says whether the target really never ran it.
		if err := v.run(ctx); err != nil {
			return fmt.Errorf("run vm %s again after a migration its target did not take: %w", v.cfg.Name, err)
		}
		m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
		v.log.Warn("migration taken back: the VM runs here again", "vm", v.cfg.Name)
		return nil
	}
	if m == nil {
		return v.cancelQEMUMigration(ctx)
	}
	if m.Finished() {
		return fmt.Errorf("cancel the migration of vm %s: none is running: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
	_ = v.command(ctx, "migrate_cancel", nil)
	m.Cancel()
	select {
	case <-m.Done:
	case <-ctx.Done():
		return ctx.Err()
	}
	// QEMU resumes a VM whose migration it cancelled; make sure.
	var st struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &st); err == nil && st.Status != "running" && v.State().Power == hypervisor.StateOn {
		_ = v.command(ctx, "cont", nil)
	}
	return nil
}

// cancelQEMUMigration cancels, or takes back, a migration this driver did
// not start (the agent that started it restarted).
func (v *vm) cancelQEMUMigration(ctx context.Context) error {
	st, err := v.qemuMigrationStatus(ctx)
	if err != nil {
		return err
	}
	switch st.State {
	case hypervisor.MigrationActive:
		if err := v.command(ctx, "migrate_cancel", nil); err != nil {
			return fmt.Errorf("cancel the migration of vm %s: %w", v.cfg.Name, err)
		}
		for i := 0; i < 100; i++ {
			if st, err = v.qemuMigrationStatus(ctx); err != nil || st.State != hypervisor.MigrationActive {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := v.adoptMirrors(ctx); err == nil {
			_ = v.finishMirrors(ctx, true)
		}
	case hypervisor.MigrationCompleted:
	default:
		return fmt.Errorf("cancel the migration of vm %s: none is running: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	var run struct {
		Status string `json:"status"`
	}
	if err := v.query(ctx, "query-status", &run); err == nil && run.Status != "running" {
		if err := v.run(ctx); err != nil {
			return fmt.Errorf("run vm %s again after cancelling its migration: %w", v.cfg.Name, err)
		}
	}
	return nil
}

// Release forgets a VM that now runs on another host.
func (d *Driver) Release(ctx context.Context, id string, removeDisks bool) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	v.mu.Lock()
	v.stopping = true
	exited, pid := v.exited, v.pid
	v.mu.Unlock()
	if exited != nil {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = v.command(qctx, "quit", nil)
		cancel()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			if err := proc.KillAndWait(pid, exited); err != nil {
				return fmt.Errorf("release vm %s: %w", v.cfg.Name, err)
			}
		}
	}
	if removeDisks {
		for _, dc := range v.cfg.Disks {
			_ = os.Remove(dc.Path)
			_ = os.Remove(filepath.Dir(dc.Path))
		}
	}
	v.forget()
	return nil
}
