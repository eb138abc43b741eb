package migration

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/pki"
)

// migrationPoll is how often a migration's progress is read from its
// source host: the switch-over waits for the next read after QEMU is done.
const migrationPoll = 50 * time.Millisecond

// switchOverRetry is how long a switch-over waits for a target host that
// cannot be reached.
const switchOverRetry = 20 * time.Second

// nbd says whether disks go along with the memory (over NBD).
func (m *migration) nbd() bool { return len(m.moved) > 0 }

// migrateLive moves a running VM to another host: the target starts a copy
// waiting for it, the source sends memory (and disks over NBD when they
// move too), the copy runs, the source forgets the VM.
func (m *migration) migrateLive(ctx context.Context) error {
	cl, ok := state.Get[*api.Cluster](m.s.st, m.dst.Spec.Cluster.ID)
	if !ok {
		return api.Errorf(api.ErrConflict, "the cluster of host %s is gone", m.dst.Metadata.Name)
	}
	release, err := m.s.places.Admit(m.vm, cl, m.dst, true)
	if err != nil {
		return err
	}
	m.t.After(release)
	in, err := m.prepareIncoming(ctx)
	if err != nil {
		return err
	}
	if err := m.start(ctx, in); err != nil {
		return err
	}
	return m.complete(ctx)
}

// prepareIncoming has the target start a copy of the VM waiting for its
// state.
func (m *migration) prepareIncoming(ctx context.Context) (hypervisor.Incoming, error) {
	vm, src, dst := m.vm, m.src, m.dst
	// The copy gets the hardware the VM runs with (vCPUs and memory
	// hot-added, its display as it started), not what its spec would boot.
	info, err := m.s.hosts.VM(ctx, hosts.TargetOf(src), vm.Metadata.ID)
	if err != nil {
		return hypervisor.Incoming{}, fmt.Errorf("read the hardware of vm %s on host %s: %w", vm.Metadata.Name, src.Metadata.Name, err)
	}
	m.cfg.Hardware = info.Hardware
	m.t.Progress(ctx, 2, "starting the copy on host "+dst.Metadata.Name)
	prepared := time.Now()
	o := m.p.Options
	in, err := m.s.hosts.Incoming(ctx, hosts.TargetOf(dst), agent.IncomingRequest{Config: m.cfg,
		Options: hypervisor.IncomingOptions{TLS: !o.Insecure, Disks: m.nbd(), Multifd: o.Multifd, Compress: o.Compress}})
	if err != nil {
		return in, fmt.Errorf("start receiving vm %s on host %s: %w", vm.Metadata.Name, dst.Metadata.Name, err)
	}
	m.res.PrepareMs = time.Since(prepared).Milliseconds()
	return in, nil
}

// start has the source send the VM to the copy waiting at in; if it
// cannot, the copy is thrown away.
func (m *migration) start(ctx context.Context, in hypervisor.Incoming) error {
	o := m.p.Options
	to := hypervisor.MigrateTarget{URI: in.URI, NBD: in.NBD, MaxBandwidth: int64(o.MaxBandwidth),
		DowntimeLimit: time.Duration(o.MaxDowntimeMs) * time.Millisecond, AutoConverge: o.AutoConverge, Multifd: o.Multifd, Compress: o.Compress}
	if !o.Insecure {
		to.TLSHostname = pki.HostDNSName(m.dst.Metadata.ID)
	}
	if err := m.s.hosts.MigrateOut(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID, to); err != nil {
		m.undo(m.abortIncoming)
		return fmt.Errorf("start sending vm %s from host %s: %w", m.vm.Metadata.Name, m.src.Metadata.Name, err)
	}
	return nil
}

// undo runs fn with a context that outlives the task's.
func (m *migration) undo(fn func(context.Context)) {
	ctx, cancel := m.t.CleanupCtx()
	defer cancel()
	fn(ctx)
}

// abortIncoming throws the target's copy away.
func (m *migration) abortIncoming(ctx context.Context) {
	// Not for long: a host that cannot be reached drops the copy by
	// itself once it is back (see OrphanCopies).
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := m.s.hosts.AbortIncoming(ctx, hosts.TargetOf(m.dst), m.vm.Metadata.ID); err != nil && !errors.Is(err, api.ErrNotFound) {
		m.s.log.Warn("cannot remove the copy of a failed migration now; the host drops it when it is back", "vm", m.vm.Metadata.Name,
			"host", m.dst.Metadata.Name, "err", err)
	}
}

// cancelOnSource stops the source sending: the VM runs on there.
func (m *migration) cancelOnSource(ctx context.Context) {
	_ = m.s.hosts.CancelMigration(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID)
}

// complete follows a migration to its end and switches the VM over, or
// undoes the target's copy.
func (m *migration) complete(ctx context.Context) error {
	vm, src, dst := m.vm, m.src, m.dst
	st, err := m.follow(ctx, true)
	if err != nil {
		if m.nbd() { // before the abort frees the space the copy took
			err = m.explainCopyFailure(err)
		}
		if ctx.Err() == nil {
			m.undo(m.abortIncoming)
		}
		return fmt.Errorf("migrate vm %s from host %s to %s: %w; it runs on %s as before", vm.Metadata.Name, src.Metadata.Name, dst.Metadata.Name, err, src.Metadata.Name)
	}
	res := m.res
	res.TotalMs, res.DowntimeMs = st.TotalTime.Milliseconds(), st.Downtime.Milliseconds()
	res.Transferred, res.Passes, res.DiskBytes = api.Size(st.TransferredBytes), st.Pass, api.Size(st.DiskDone)
	switched := time.Now()
	defer func() { res.SwitchMs = time.Since(switched).Milliseconds() }()
	// The state has gone: a user's cancel can no longer stop the
	// switch-over half-way (only this server's leadership ending can, and
	// the next leader resumes it).
	return m.switchOver(m.t.Leader)
}

// explainCopyFailure names a full target datastore as the cause of a
// failed disk copy: the target host only shows it as a stream that stops.
func (m *migration) explainCopyFailure(err error) error {
	for i, d := range m.after.Spec.Disks {
		if i >= len(m.vm.Spec.Disks) || d.Datastore.ID == m.vm.Spec.Disks[i].Datastore.ID {
			continue
		}
		ds, ok := state.Get[*api.Datastore](m.s.st, d.Datastore.ID)
		if !ok {
			continue
		}
		if c := ds.Status.CapacityBytes; c > 0 && ds.Status.FreeBytes < max(1<<20, c/1000) {
			return fmt.Errorf("datastore %s is full (%s free of %s): %w", ds.Metadata.Name, ds.Status.FreeBytes, c, err)
		}
	}
	return err
}

// switchOver runs the target's copy, records it, and has the source forget
// the VM.
func (m *migration) switchOver(ctx context.Context) error {
	fin, err := m.finishIncoming(ctx)
	if err != nil {
		return m.takeBack(ctx, err)
	}
	if err := m.switchTo(ctx, &fin); err != nil {
		return err
	}
	if err := m.s.hosts.Release(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID, m.nbd()); err != nil && !errors.Is(err, api.ErrNotFound) {
		m.s.log.Error("the source host could not forget a migrated VM; its paused copy stays there", "vm", m.vm.Metadata.Name,
			"host", m.src.Metadata.Name, "err", err)
	}
	return nil
}

// finishIncoming runs the target's copy, trying again for a while when
// the target cannot be reached (its agent restarting).
func (m *migration) finishIncoming(ctx context.Context) (api.AgentVMState, error) {
	deadline := time.Now().Add(switchOverRetry)
	for {
		fin, err := m.s.hosts.FinishIncoming(ctx, hosts.TargetOf(m.dst), m.vm.Metadata.ID)
		if err == nil || !errors.Is(err, api.ErrUnavailable) || time.Now().After(deadline) || ctx.Err() != nil {
			return fin, err
		}
		select {
		case <-ctx.Done():
			return fin, err
		case <-time.After(time.Second):
		}
	}
}

// takeBack runs the VM on the source again when its target could not run
// the copy: only when the target surely did not, or two copies would run.
func (m *migration) takeBack(ctx context.Context, finishErr error) error {
	name, src, dst := m.vm.Metadata.Name, m.src.Metadata.Name, m.dst.Metadata.Name
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	info, err := m.s.hosts.VM(cctx, hosts.TargetOf(m.dst), m.vm.Metadata.ID)
	switch {
	case err == nil && !info.Incoming:
		// It did run there after all (the answer was lost).
		return fmt.Errorf("vm %s runs on host %s but the switch-over did not finish: %w; migrate it again to set the inventory right",
			name, dst, finishErr)
	case err == nil, agent.NeverReached(finishErr):
		// The copy never ran (or its host never heard of running it).
		if err == nil {
			_ = m.s.hosts.AbortIncoming(cctx, hosts.TargetOf(m.dst), m.vm.Metadata.ID)
		}
		if terr := m.s.hosts.CancelMigration(cctx, hosts.TargetOf(m.src), m.vm.Metadata.ID); terr != nil {
			return fmt.Errorf("vm %s: host %s could not run it (%v) and host %s could not take it back: %w; it is paused on %s",
				name, dst, finishErr, src, terr, src)
		}
		return fmt.Errorf("migrate vm %s: host %s could not run it after the transfer: %w; it runs on %s as before",
			name, dst, finishErr, src)
	}
	return fmt.Errorf("migrate vm %s: the switch-over to host %s was interrupted (%w) and the host does not answer: vm %s is paused on %s "+
		"and may run on %s; check host %s before resuming it", name, dst, finishErr, name, src, dst, dst)
}

// resume finishes, after a server restart, a migration a previous leader
// started: by what the two hosts say.
func (m *migration) resume(ctx context.Context) error {
	dinfo, derr := m.s.hosts.VM(ctx, hosts.TargetOf(m.dst), m.vm.Metadata.ID)
	sinfo, serr := m.s.hosts.VM(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID)
	sending := serr == nil && (sinfo.Migration.State == hypervisor.MigrationActive || sinfo.Migration.State == hypervisor.MigrationMirroring ||
		sinfo.Migration.State == hypervisor.MigrationSetup)
	switch {
	case derr == nil && !dinfo.Incoming:
		// It finished: only the bookkeeping is left.
		st := dinfo.AgentVMState
		if err := m.switchTo(m.t.Leader, &st); err != nil {
			return err
		}
		if serr == nil {
			_ = m.s.hosts.Release(ctx, hosts.TargetOf(m.src), m.vm.Metadata.ID, m.nbd())
		}
		return nil
	case derr == nil && serr == nil && sinfo.Migration.State == hypervisor.MigrationCompleted:
		return m.switchOver(m.t.Leader)
	case derr == nil && sending:
		return m.complete(ctx)
	}
	if derr == nil {
		m.abortIncoming(ctx)
	}
	return fmt.Errorf("interrupted: the management server stopped during the migration; vm %s stays on host %s", m.vm.Metadata.Name, m.src.Metadata.Name)
}
