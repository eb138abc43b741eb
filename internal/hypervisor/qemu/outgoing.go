package qemu

import (
	"context"
	"errors"
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

func (v *vm) migrateOut(ctx context.Context, m *migration.Job, to hypervisor.MigrateTarget) error {
	tls := ""
	if to.TLSHostname != "" {
		tls = "client"
		if err := migration.AddTLS(ctx, v, v.d.opt.TLSDir, tls); err != nil {
			return err
		}
	}
	// Parameters stay set in QEMU from one migration to the next: set
	// every one, to the default where the request has none.
	extra := map[string]any{"auto-converge": to.AutoConverge, "tls-hostname": to.TLSHostname,
		"max-bandwidth": migration.UnlimitedBandwidth, "downtime-limit": migration.DefaultDowntimeLimit.Milliseconds()}
	if to.MaxBandwidth > 0 {
		extra["max-bandwidth"] = to.MaxBandwidth
	}
	if to.DowntimeLimit > 0 {
		extra["downtime-limit"] = to.DowntimeLimit.Milliseconds()
	}
	if err := migration.SetParams(ctx, v, to.Multifd, to.Compress, tls, extra); err != nil {
		return err
	}
	if to.NBD != "" {
		if err := v.mirrorTo(ctx, m, to.NBD, to.TLSHostname, to.MaxBandwidth); err != nil {
			return fmt.Errorf("copy the disks: %w", err)
		}
	}
	m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationActive })
	if err := v.command(ctx, "migrate", map[string]any{"uri": to.URI}); err != nil {
		return err
	}
	for {
		var q migration.Query
		if err := v.query(ctx, "query-migrate", &q); err != nil {
			return err
		}
		m.Update(func(st *hypervisor.MigrationStatus) { q.Into(st) })
		switch q.Status {
		case "completed":
			if to.NBD != "" {
				// The source is paused: finishing the mirrors flushes the
				// last writes to the target.
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
		case "failed":
			return fmt.Errorf("QEMU: %s", q.ErrorDesc)
		case "cancelled":
			m.Update(func(st *hypervisor.MigrationStatus) { st.State = hypervisor.MigrationCancelled })
			return errors.New("cancelled")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}
