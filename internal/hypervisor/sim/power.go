package sim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Define records the VM's definition in cfg.Dir, making the directory if
// needed. Redefining a known VM updates its definition in any power state
// (a simulated guest does not mind). A VM unknown to this Driver whose
// directory already holds a state file keeps the power state found there:
// an agent that defines rather than attaches after a restart must not turn a
// running VM off.
func (d *Driver) Define(ctx context.Context, cfg hypervisor.VMConfig) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("define vm %q: %w", cfg.ID, err)
	}
	if err := validate(cfg); err != nil {
		return fmt.Errorf("define vm %q: %w", cfg.ID, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, err := d.lookup(cfg.ID); err == nil {
		if err := v.notReceiving(); err != nil {
			return fmt.Errorf("define vm %q: %w", cfg.ID, err)
		}
		if err := d.redefine(v, cfg); err != nil {
			return fmt.Errorf("define vm %q: %w", cfg.ID, err)
		}
		v.log.Debug("redefined")
		return nil
	} else if !errors.Is(err, hypervisor.ErrNotFound) {
		return fmt.Errorf("define vm %q: %w", cfg.ID, err)
	}

	created, err := ensureDir(cfg.Dir)
	if err != nil {
		return fmt.Errorf("define vm %q: %w", cfg.ID, err)
	}
	now := d.now()
	rec, err := readRecord(cfg.Dir)
	switch {
	case err == nil:
		if rec.Config.ID != cfg.ID {
			return fmt.Errorf("define vm %q: %s belongs to vm %q", cfg.ID, statePath(cfg.Dir), rec.Config.ID)
		}
		rec.catchUp(now)
	case errors.Is(err, hypervisor.ErrNotFound):
		rec = record{Power: hypervisor.StateOff, Since: now, CreatedDir: created}
	default:
		return fmt.Errorf("define vm %q: %w", cfg.ID, err)
	}
	rec.Config = cfg
	d.adoptCopies(&rec)
	v := &vm{log: d.log.With("vm", cfg.ID)}
	if err := d.commit(v, rec); err != nil {
		if created {
			os.Remove(cfg.Dir)
		}
		return fmt.Errorf("define vm %q: %w", cfg.ID, err)
	}
	d.vms[cfg.ID] = v
	v.log.Debug("defined", "power", rec.Power)
	return nil
}

// redefine replaces a known VM's definition; the caller holds mu.
func (d *Driver) redefine(v *vm, cfg hypervisor.VMConfig) error {
	rec := v.rec
	old := rec
	rec.Config = cfg
	moved := cfg.Dir != old.Config.Dir
	if moved {
		created, err := ensureDir(cfg.Dir)
		if err != nil {
			return err
		}
		rec.CreatedDir = created
	}
	if err := d.commit(v, rec); err != nil {
		return err
	}
	if moved {
		if err := removeFiles(old); err != nil {
			v.log.Warn("remove state file from old directory", "dir", old.Config.Dir, "err", err)
		}
	}
	return nil
}

// Attach takes over a VM that this or an earlier Driver defined in
// cfg.Dir, and returns its state, including what happened while no driver
// was watching (a requested shutdown that has since completed).
func (d *Driver) Attach(ctx context.Context, cfg hypervisor.VMConfig) (hypervisor.VMState, error) {
	fail := func(err error) (hypervisor.VMState, error) {
		return hypervisor.VMState{}, fmt.Errorf("attach vm %q: %w", cfg.ID, err)
	}
	if err := d.usable(ctx); err != nil {
		return fail(err)
	}
	if err := validate(cfg); err != nil {
		return fail(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if v, err := d.lookup(cfg.ID); err == nil {
		if err := v.notReceiving(); err != nil {
			return fail(err)
		}
		if err := d.redefine(v, cfg); err != nil {
			return fail(err)
		}
		return v.rec.state(), nil
	} else if !errors.Is(err, hypervisor.ErrNotFound) {
		return fail(err)
	}

	rec, err := readRecord(cfg.Dir)
	if err != nil {
		return fail(err)
	}
	if rec.Config.ID != cfg.ID {
		return fail(fmt.Errorf("%s belongs to vm %q", statePath(cfg.Dir), rec.Config.ID))
	}
	rec.catchUp(d.now())
	rec.Config = cfg
	v := &vm{log: d.log.With("vm", cfg.ID)}
	d.vms[cfg.ID] = v
	if rec.Power != hypervisor.StateOff && rec.SentAt.IsZero() {
		// The lock went with the agent that held it: take it again, or
		// the VM runs on another host now and not here.
		if err := d.takeLease(v, cfg.Lease); err != nil {
			rec.turnOff(d.now(), err.Error())
		}
	}
	if err := d.commit(v, rec); err != nil {
		delete(d.vms, cfg.ID)
		d.syncLease(v)
		return fail(err)
	}
	v.log.Info("attached", "power", rec.Power, "since", rec.Since)
	return rec.state(), nil
}

// Undefine removes the VM's state file (and its directory if Define made it
// and it is now empty) and forgets the VM. The VM must be off.
func (d *Driver) Undefine(ctx context.Context, id string) error {
	if err := d.usable(ctx); err != nil {
		return fmt.Errorf("undefine vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return fmt.Errorf("undefine vm %q: %w", id, err)
	}
	if err := v.notReceiving(); err != nil {
		return fmt.Errorf("undefine vm %q: %w", id, err)
	}
	if v.rec.Power != hypervisor.StateOff {
		return fmt.Errorf("undefine vm %q: power is %s: %w", id, v.rec.Power, hypervisor.ErrWrongState)
	}
	if err := removeFiles(v.rec); err != nil {
		return fmt.Errorf("undefine vm %q: %w", id, err)
	}
	d.disarm(v)
	delete(d.vms, id)
	v.log.Debug("undefined")
	return nil
}

// State returns the VM's current state.
func (d *Driver) State(ctx context.Context, id string) (hypervisor.VMState, error) {
	if err := d.usable(ctx); err != nil {
		return hypervisor.VMState{}, fmt.Errorf("state of vm %q: %w", id, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	v, err := d.lookup(id)
	if err != nil {
		return hypervisor.VMState{}, fmt.Errorf("state of vm %q: %w", id, err)
	}
	return v.rec.state(), nil
}

// Start powers on a VM that is off; its guest boots for Options.BootDelay.
func (d *Driver) Start(ctx context.Context, id string) error {
	return d.transition(ctx, opStart, id, []string{hypervisor.StateOff}, func(r *record, now time.Time) bool {
		r.Power, r.Reason, r.Since = hypervisor.StateOn, "", now
		hw := hypervisor.BootHardware(r.Config)
		r.Hardware = &hw
		r.BootedAt = now.Add(d.bootDelay)
		r.ShutdownAt = time.Time{}
		return true
	})
}

// Shutdown presses the VM's ACPI power button. The guest turns off
// Options.ShutdownDelay after it has booted, and subscribers hear of it. A
// guest labeled LabelIgnoreACPI ignores the request; a second request while
// one is pending changes nothing.
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	return d.transition(ctx, "shutdown", id, []string{hypervisor.StateOn}, func(r *record, now time.Time) bool {
		if r.Config.Labels[LabelIgnoreACPI] == "true" || !r.ShutdownAt.IsZero() {
			return false
		}
		r.ShutdownAt = laterOf(now, r.BootedAt).Add(d.shutdownDelay)
		return true
	})
}

// PowerOff stops an on or suspended VM at once, cancelling any pending guest
// shutdown.
func (d *Driver) PowerOff(ctx context.Context, id string) error {
	return d.transition(ctx, opPowerOff, id, []string{hypervisor.StateOn, hypervisor.StateSuspended}, func(r *record, now time.Time) bool {
		r.turnOff(now, "")
		return true
	})
}

// Reset reboots the guest: it stays on, boots again, and forgets a pending
// shutdown.
func (d *Driver) Reset(ctx context.Context, id string) error {
	return d.transition(ctx, "reset", id, []string{hypervisor.StateOn}, func(r *record, now time.Time) bool {
		r.Reason, r.Since = "", now
		r.BootedAt = now.Add(d.bootDelay)
		r.ShutdownAt = time.Time{}
		return true
	})
}

// Suspend pauses the guest; a boot or shutdown in progress pauses with it.
func (d *Driver) Suspend(ctx context.Context, id string) error {
	return d.transition(ctx, "suspend", id, []string{hypervisor.StateOn}, func(r *record, now time.Time) bool {
		r.Power, r.Reason, r.Since = hypervisor.StateSuspended, "", now
		return true
	})
}

// Resume continues a suspended guest where it left off.
func (d *Driver) Resume(ctx context.Context, id string) error {
	return d.transition(ctx, "resume", id, []string{hypervisor.StateSuspended}, func(r *record, now time.Time) bool {
		paused := max(now.Sub(r.Since), 0)
		if !r.BootedAt.IsZero() {
			r.BootedAt = r.BootedAt.Add(paused)
		}
		if !r.ShutdownAt.IsZero() {
			r.ShutdownAt = r.ShutdownAt.Add(paused)
		}
		r.Power, r.Reason, r.Since = hypervisor.StateOn, "", now
		return true
	})
}

const (
	opPowerOff = "power off"
	opStart    = "start"
)

// transition runs one power operation on a copy of the VM's record: change
// edits it (returning false when there is nothing to do) and commit makes it
// current.
func (d *Driver) transition(ctx context.Context, op, id string, from []string, change func(r *record, now time.Time) bool) error {
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
	// Only power off ends a guest paused for good after migrating.
	if err := v.notSent(); err != nil && op != opPowerOff {
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	if !slices.Contains(from, v.rec.Power) {
		return fmt.Errorf("%s vm %q: power is %s: %w", op, id, v.rec.Power, hypervisor.ErrWrongState)
	}
	rec := v.rec
	if !change(&rec, d.now()) {
		v.log.Debug(op+": nothing to do", "power", rec.Power)
		return nil
	}
	if op == opStart {
		if err := d.takeLease(v, rec.Config.Lease); err != nil {
			return fmt.Errorf("%s vm %q: %w", op, id, err)
		}
	}
	if err := d.commit(v, rec); err != nil {
		d.syncLease(v)
		return fmt.Errorf("%s vm %q: %w", op, id, err)
	}
	v.log.Debug(op, "power", rec.Power)
	return nil
}

// validate rejects definitions no real hypervisor would accept, so that the
// agent's mistakes surface under sim too rather than first under qemu.
func validate(cfg hypervisor.VMConfig) error {
	switch {
	case cfg.ID == "":
		return errors.New("empty vm id")
	case cfg.Dir == "":
		return errors.New("empty vm directory")
	case cfg.CPUs <= 0:
		return fmt.Errorf("cpus is %d, want at least 1", cfg.CPUs)
	case cfg.MemoryBytes <= 0:
		return fmt.Errorf("memory is %d bytes, want more than 0", cfg.MemoryBytes)
	}
	return nil
}

// ensureDir makes dir if it is missing and says whether it did.
func ensureDir(dir string) (created bool, err error) {
	if _, err := os.Stat(dir); err == nil {
		return false, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return false, err
	}
	return true, nil
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
