package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

var _ hypervisor.Migrator = (*Driver)(nil)

// URIScheme starts the URI of every sim Incoming: a sim VM can only be
// sent to another sim host.
const URIScheme = "sim://"

// nbdPort is NBD's well-known port. Nothing listens on it: a sim target
// needs no connection, but callers expect host:port.
const nbdPort = "10809"

const reasonIncoming = "being received from another host"

// migration is a VM's migration out or disk move, run by one timer at the
// end of its plan; until then its status is read off the plan.
type migration struct {
	what  string // "migration" or "disk move", for messages
	plan  plan
	start time.Time
	moves []hypervisor.DiskMove // a disk move's
	// final is the status once it ended (completed, failed or cancelled).
	final *hypervisor.MigrationStatus
	timer *time.Timer
}

// armMigration starts the timer that ends m; the caller holds mu.
func (d *Driver) armMigration(v *vm, m *migration) {
	d.running.Add(1)
	m.timer = time.AfterFunc(max(m.start.Add(m.plan.end).Sub(d.now()), 0), func() {
		defer d.running.Done()
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.closed || v.mig != m || m.final != nil || d.vms[v.rec.Config.ID] != v {
			return
		}
		m.timer = nil
		d.finish(v, m)
	})
}

// stopMigration stops v's migration timer, if any; the caller holds mu.
func (d *Driver) stopMigration(v *vm) {
	m := v.mig
	if m == nil {
		return
	}
	if m.timer != nil && m.timer.Stop() {
		// The callback will never run, so it cannot say it is done.
		d.running.Done()
	}
	m.timer = nil
}

// settle ends v's migration if its plan has run out by now, so that callers
// see the same thing whether or not the timer has fired yet (it fires on
// the real clock, which Options.Now may be ahead of). The caller holds mu.
func (d *Driver) settle(v *vm, now time.Time) {
	if m := v.mig; m != nil && m.final == nil && !now.Before(m.start.Add(m.plan.end)) {
		d.finish(v, m)
	}
}

// finish applies the end of m's plan; the caller holds mu.
func (d *Driver) finish(v *vm, m *migration) {
	d.stopMigration(v)
	end := m.start.Add(m.plan.end)
	// A guest shutdown due before the end turned the VM off first, and so
	// ended the migration (the shutdown timer may not have fired yet).
	if rec := v.rec; rec.catchUp(end) {
		d.force(v, rec, "guest shutdown")
		v.log.Info("guest shut down")
		d.publish(rec.Config.ID)
		return
	}
	st := m.plan.final()
	m.final = &st
	switch {
	case st.State == hypervisor.MigrationFailed:
		v.log.Warn(m.what+" failed", "err", st.Error, "passes", st.Pass, "took", st.TotalTime)
	case m.moves != nil:
		rec := v.rec
		rec.Config.Disks = slices.Clone(rec.Config.Disks) // the caller's slice is not ours to change
		for _, mv := range m.moves {
			for i := range rec.Config.Disks {
				if rec.Config.Disks[i].Name == mv.Name {
					rec.Config.Disks[i].Path = mv.Path
				}
			}
		}
		d.force(v, rec, "disk move")
		v.log.Info("disks moved", "disks", len(m.moves), "bytes", st.DiskDone, "took", st.TotalTime)
	default:
		// The source stops its guest for the switch-over and never runs it
		// again: only Release or PowerOff follow.
		rec := v.rec
		rec.SentAt = end
		d.force(v, rec, "migration")
		v.log.Info("migration completed", "passes", st.Pass, "took", st.TotalTime, "downtime", st.Downtime)
	}
}

// abandon fails v's migration in progress because the VM turned off at at;
// the caller holds mu.
func (d *Driver) abandon(v *vm, at time.Time) {
	m := v.mig
	if m == nil || m.final != nil {
		return
	}
	d.stopMigration(v)
	st := m.plan.progress(at.Sub(m.start))
	st.State, st.Error = hypervisor.MigrationFailed, "the vm turned off during the "+m.what
	m.final = &st
	v.log.Warn(m.what+" failed", "err", st.Error)
}

// mayMigrate says why v cannot start a migration or disk move; the caller
// holds mu.
func (v *vm) mayMigrate() error {
	if err := v.notReceiving(); err != nil {
		return err
	}
	if err := v.notSent(); err != nil {
		return err
	}
	if m := v.mig; m != nil && m.final == nil {
		return fmt.Errorf("a %s is under way: %w", m.what, hypervisor.ErrWrongState)
	}
	return nil
}

func (v *vm) notReceiving() error {
	if v.incoming {
		return fmt.Errorf("it is %s: %w", reasonIncoming, hypervisor.ErrWrongState)
	}
	return nil
}

func (v *vm) notSent() error {
	if !v.rec.SentAt.IsZero() {
		return fmt.Errorf("it has moved to another host and waits to be released: %w", hypervisor.ErrWrongState)
	}
	return nil
}

// Incoming makes an empty copy of the VM that State reports off (with a
// reason) and that nothing but FinishIncoming, AbortIncoming and Release
// acts on. The copy has no state file until FinishIncoming, so an agent
// that restarts while receiving forgets it: Attach finds nothing, and the
// migration has to start again. The target does not check that the source
// has sent everything (sim hosts share nothing, not even a process), so
// FinishIncoming trusts its caller to wait for MigrationCompleted.
func (d *Driver) Incoming(ctx context.Context, cfg hypervisor.VMConfig, opt hypervisor.IncomingOptions) (hypervisor.Incoming, error) {
	fail := func(err error) (hypervisor.Incoming, error) {
		return hypervisor.Incoming{}, fmt.Errorf("receive vm %q: %w", cfg.ID, err)
	}
	if err := d.usable(ctx); err != nil {
		return fail(err)
	}
	if err := validate(cfg); err != nil {
		return fail(err)
	}
	if opt.Address == "" {
		return fail(errors.New("no address to receive on"))
	}
	switch opt.Compress {
	case "", "zstd", "xbzrle":
	default:
		return fail(fmt.Errorf("unknown compression %q (want zstd or xbzrle)", opt.Compress))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return fail(ErrClosed)
	}
	if _, ok := d.vms[cfg.ID]; ok {
		return fail(fmt.Errorf("it is already on this host: %w", hypervisor.ErrWrongState))
	}
	// A state file there is a VM an earlier agent left behind and this one
	// has not attached yet; finishing would overwrite it.
	if rec, err := readRecord(cfg.Dir); err == nil {
		return fail(fmt.Errorf("%s already holds vm %q: %w", statePath(cfg.Dir), rec.Config.ID, hypervisor.ErrWrongState))
	} else if !errors.Is(err, hypervisor.ErrNotFound) {
		return fail(err)
	}
	// Made now so that a directory the VM cannot have fails before the
	// source sends anything.
	created, err := ensureDir(cfg.Dir)
	if err != nil {
		return fail(err)
	}
	hw := hypervisor.BootHardware(cfg)
	if cfg.Hardware != nil {
		hw = *cfg.Hardware // the sender's
	}
	v := &vm{log: d.log.With("vm", cfg.ID), incoming: true, rec: record{Config: cfg, Power: hypervisor.StateOff,
		Reason: reasonIncoming, Since: d.now(), CreatedDir: created, Hardware: &hw}}
	d.vms[cfg.ID] = v
	host := opt.Address
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	in := hypervisor.Incoming{URI: URIScheme + host + "/" + cfg.ID}
	if opt.Disks {
		in.NBD = net.JoinHostPort(opt.Address, nbdPort)
	}
	v.log.Info("receiving", "uri", in.URI, "disks", opt.Disks)
	return in, nil
}

// FinishIncoming turns the received copy into a running VM of this host,
// on since now, and saves it like any other.
func (d *Driver) FinishIncoming(ctx context.Context, id string) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("finish receiving vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.receiving(id)
	if err != nil {
		return fmt.Errorf("finish receiving vm %q: %w", id, err)
	}
	now := d.now()
	rec := v.rec
	// The guest booted long ago, on the source.
	rec.Power, rec.Reason, rec.Since, rec.BootedAt = hypervisor.StateOn, "", now, now
	v.incoming = false
	if err := d.takeLease(v, rec.Config.Lease); err != nil {
		v.incoming = true
		return fmt.Errorf("finish receiving vm %q: %w", id, err)
	}
	if err := d.commit(v, rec); err != nil {
		v.incoming = true
		d.syncLease(v)
		return fmt.Errorf("finish receiving vm %q: %w", id, err)
	}
	v.log.Info("received")
	return nil
}

// AbortIncoming forgets the copy being received, and its directory if
// Incoming made it (and it is empty).
func (d *Driver) AbortIncoming(ctx context.Context, id string) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("abort receiving vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.receiving(id)
	if err != nil {
		return fmt.Errorf("abort receiving vm %q: %w", id, err)
	}
	d.forget(v)
	v.log.Info("receive aborted")
	return nil
}

// receiving finds a copy being received; the caller holds mu.
func (d *Driver) receiving(id string) (*vm, error) {
	v, err := d.lookup(id)
	if err != nil {
		return nil, err
	}
	if !v.incoming {
		return nil, fmt.Errorf("it is not being received: %w", hypervisor.ErrWrongState)
	}
	return v, nil
}

// forget drops v and whatever sim keeps of it; the caller holds mu.
func (d *Driver) forget(v *vm) {
	d.stopMigration(v)
	d.disarm(v)
	if v.incoming && v.rec.CreatedDir {
		_ = os.Remove(v.rec.Config.Dir) // only if empty: it may be shared
	}
	delete(d.vms, v.rec.Config.ID)
	d.syncLease(v)
}

// MigrateOut starts sending a VM that is on to the sim host whose Incoming
// gave to.URI; see the model in model.go. The VM runs on here meanwhile.
func (d *Driver) MigrateOut(ctx context.Context, id string, to hypervisor.MigrateTarget) error {
	fail := func(err error) error { return fmt.Errorf("migrate vm %q: %w", id, err) }
	if err := d.usable(ctx); err != nil {
		return fail(err)
	}
	if !strings.HasPrefix(to.URI, URIScheme) {
		return fail(fmt.Errorf("target %q is not a sim host (want %s...)", to.URI, URIScheme))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fail(err)
	}
	if err := v.mayMigrate(); err != nil {
		return fail(err)
	}
	if v.rec.Power != hypervisor.StateOn {
		return fail(fmt.Errorf("power is %s: %w", v.rec.Power, hypervisor.ErrWrongState))
	}
	model, err := newMigrationModel(v.rec.Config, to)
	if err != nil {
		return fail(err)
	}
	m := &migration{what: "migration", plan: model.plan(), start: d.now()}
	v.mig = m
	d.armMigration(v, m)
	v.log.Info("migrating", "to", to.URI, "disks", model.mirror, "bandwidth", model.bandwidth, "dirtyRate", model.dirtyRate,
		"expected", m.plan.end, "passes", m.plan.passes, "fails", m.plan.failure != "")
	return nil
}

// MigrationStatus reports the VM's migration out or disk move under way,
// or the last one; MigrationNone when there was none (a copy being
// received included: the target does not follow the migration).
func (d *Driver) MigrationStatus(ctx context.Context, id string) (hypervisor.MigrationStatus, error) {
	if err := d.usable(ctx); err != nil {
		return hypervisor.MigrationStatus{}, fmt.Errorf("migration status of vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return hypervisor.MigrationStatus{}, fmt.Errorf("migration status of vm %q: %w", id, err)
	}
	switch m := v.mig; {
	case m == nil:
		return hypervisor.MigrationStatus{State: hypervisor.MigrationNone}, nil
	case m.final != nil:
		return *m.final, nil
	default:
		return m.plan.progress(d.now().Sub(m.start)), nil
	}
}

// CancelMigration stops the migration out or disk move under way where it
// is; the VM goes on as before it (a disk move leaves its disks where they
// were).
func (d *Driver) CancelMigration(ctx context.Context, id string) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("cancel the migration of vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fmt.Errorf("cancel the migration of vm %q: %w", id, err)
	}
	m := v.mig
	if m != nil && m.final != nil && m.final.State == hypervisor.MigrationCompleted && !v.rec.SentAt.IsZero() {
		// The target never took over: the guest runs here again, if the
		// lease says the target really never ran it.
		if err := d.takeLease(v, v.rec.Config.Lease); err != nil {
			return fmt.Errorf("take back vm %q: %w", id, err)
		}
		rec := v.rec
		rec.SentAt = time.Time{}
		d.force(v, rec, "migration taken back")
		m.final.State = hypervisor.MigrationCancelled
		v.log.Warn("migration taken back: the VM runs here again")
		return nil
	}
	if m == nil || m.final != nil {
		return fmt.Errorf("cancel the migration of vm %q: none is under way: %w", id, hypervisor.ErrWrongState)
	}
	d.stopMigration(v)
	st := m.plan.progress(d.now().Sub(m.start))
	st.State = hypervisor.MigrationCancelled
	m.final = &st
	v.log.Info(m.what+" cancelled", "after", st.TotalTime)
	return nil
}

// Release forgets a VM in whatever state, removing its state file: it now
// runs on another host. Sim makes no disk files, so removeDisks has
// nothing to remove.
func (d *Driver) Release(ctx context.Context, id string, removeDisks bool) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("release vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fmt.Errorf("release vm %q: %w", id, err)
	}
	if !v.incoming {
		if err := removeFiles(v.rec); err != nil {
			return fmt.Errorf("release vm %q: %w", id, err)
		}
	}
	d.forget(v)
	v.log.Info("released", "power", v.rec.Power)
	return nil
}

// MoveDisks models copying the moved disks' share of LabelDiskUsed (by
// their sizes) at DefaultMigrationBandwidth while the VM runs or is
// suspended; MigrationStatus follows it as a mirroring that completes.
// Then the VM's definition points at the new paths, in its state file
// too. Sim has no disk files to copy or remove.
func (d *Driver) MoveDisks(ctx context.Context, id string, moves []hypervisor.DiskMove) error {
	fail := func(err error) error { return fmt.Errorf("move the disks of vm %q: %w", id, err) }
	if err := d.usable(ctx); err != nil {
		return fail(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fail(err)
	}
	if err := v.mayMigrate(); err != nil {
		return fail(err)
	}
	if p := v.rec.Power; p != hypervisor.StateOn && p != hypervisor.StateSuspended {
		return fail(fmt.Errorf("power is %s: %w", p, hypervisor.ErrWrongState))
	}
	bytes, err := moveBytes(v.rec.Config, moves)
	if err != nil {
		return fail(err)
	}
	m := &migration{what: "disk move", plan: diskMovePlan(bytes), start: d.now(), moves: slices.Clone(moves)}
	v.mig = m
	d.armMigration(v, m)
	v.log.Info("moving disks", "disks", len(moves), "bytes", bytes, "expected", m.plan.end)
	return nil
}

// moveBytes checks moves against cfg and says how much data they copy:
// the moved disks' share of LabelDiskUsed, by size (evenly when the sizes
// are unknown).
func moveBytes(cfg hypervisor.VMConfig, moves []hypervisor.DiskMove) (int64, error) {
	used, err := labelSize(cfg, LabelDiskUsed)
	if err != nil {
		return 0, err
	}
	var all, moved int64
	for _, dc := range cfg.Disks {
		all += dc.SizeBytes
	}
	seen := map[string]bool{}
	for _, mv := range moves {
		i := slices.IndexFunc(cfg.Disks, func(dc hypervisor.DiskConfig) bool { return dc.Name == mv.Name })
		switch {
		case i < 0:
			return 0, fmt.Errorf("it has no disk %q", mv.Name)
		case seen[mv.Name]:
			return 0, fmt.Errorf("disk %q is moved twice", mv.Name)
		case !filepath.IsAbs(mv.Path):
			return 0, fmt.Errorf("disk %q: new path %q is not absolute", mv.Name, mv.Path)
		}
		seen[mv.Name] = true
		moved += cfg.Disks[i].SizeBytes
	}
	if all > 0 {
		return int64(float64(used) * float64(moved) / float64(all)), nil
	}
	if len(cfg.Disks) == 0 {
		return 0, nil
	}
	return used * int64(len(moves)) / int64(len(cfg.Disks)), nil
}
