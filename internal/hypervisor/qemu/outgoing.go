package qemu

import (
	"context"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/migration"
)

// MigrateOut starts sending a running VM to a copy on another host.
func (d *Driver) MigrateOut(ctx context.Context, id string, to hypervisor.MigrateTarget) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("migrate", hypervisor.StateOn); err != nil {
		return err
	}
	if err := v.refuseUnfinished(); err != nil {
		return err
	}
	m, err := v.newMigration()
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(context.Background())
	m.Cancel = cancel
	go func() {
		defer close(m.Done)
		defer cancel()
		if err := v.migrateOut(mctx, m, to); err != nil {
			m.Fail(err)
			v.cleanupMirrors(context.Background())
			v.log.Warn("migration failed", "vm", v.cfg.Name, "err", err)
		}
	}()
	return nil
}

func (v *vm) newMigration() (*migration.Job, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mig != nil && !v.mig.Finished() {
		return nil, fmt.Errorf("vm %s is already migrating: %w", v.cfg.Name, hypervisor.ErrWrongState)
	}
	v.mig = migration.NewJob()
	return v.mig, nil
}

// migrateOut sends the VM to the target, its disks first when they go
// too, and lets go of its lease once the target has it all.
func (v *vm) migrateOut(ctx context.Context, m *migration.Job, to hypervisor.MigrateTarget) error {
	if err := migration.Prepare(ctx, v, v.d.opt.TLSDir, to); err != nil {
		return err
	}
	if to.NBD != "" {
		if err := v.mirrorTo(ctx, m, to.NBD, to.TLSHostname, to.MaxBandwidth); err != nil {
			return fmt.Errorf("copy the disks: %w", err)
		}
	}
	q, err := migration.Send(ctx, v, m, to.URI)
	if err != nil {
		return err
	}
	if to.NBD != "" {
		// The source is paused: finishing the mirrors flushes the last
		// writes to the target.
		if err := v.finishMirrors(ctx, false); err != nil {
			return err
		}
	}
	// The target takes the lease once it is told to run.
	if err := v.dropLease(ctx); err != nil {
		return err
	}
	m.Update(func(st *hypervisor.MigrationStatus) {
		st.State = hypervisor.MigrationCompleted
		st.TotalTime = time.Duration(q.TotalTime) * time.Millisecond
	})
	return nil
}
