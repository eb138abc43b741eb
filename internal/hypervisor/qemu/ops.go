package qemu

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/diskfile"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/guestagent"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
)

func (d *Driver) newVM(cfg hypervisor.VMConfig) *vm {
	// The VM's config is its own: the driver changes it (disk moves).
	cfg.Disks = slices.Clone(cfg.Disks)
	cfg.NICs = slices.Clone(cfg.NICs)
	v := &vm{d: d, cfg: cfg, p: proc.Paths{Run: d.runDirFor(cfg), Dir: cfg.Dir}, log: d.log.With("vm", cfg.Name),
		power: hypervisor.StateOff, since: time.Now().UTC()}
	v.guest = guestagent.New(guestagent.Options{Socket: v.p.QGA(), Name: func() string { return v.cfg.Name },
		Running: v.HasQEMU, Changed: func() { d.notify(cfg.ID) }, Poll: d.opt.GuestPoll, Grace: d.opt.GuestAgentGrace, Log: v.log})
	return v
}

func validate(cfg hypervisor.VMConfig) error {
	switch {
	case cfg.ID == "" || cfg.Dir == "":
		return errors.New("VM config needs an ID and a directory")
	case cfg.CPUs < 1 || cfg.MemoryBytes < 1<<20:
		return fmt.Errorf("vm %s: needs at least 1 CPU and 1 MiB of memory", cfg.Name)
	}
	return nil
}

// Define creates the VM's disks (thin, from an image, or as overlays) and
// records it. A failed Define leaves nothing behind.
func (d *Driver) Define(ctx context.Context, cfg hypervisor.VMConfig) error {
	if err := validate(cfg); err != nil {
		return err
	}
	if err := d.checkFiles(cfg); err != nil {
		return fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	d.mu.Lock()
	v, exists := d.vms[cfg.ID]
	d.mu.Unlock()
	if err := diskfile.CreateAll(ctx, cfg); err != nil {
		return fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	if exists {
		v.mu.Lock()
		v.cfg = d.newVM(cfg).cfg // used from the next start
		v.mu.Unlock()
		return nil
	}
	v = d.newVM(cfg)
	if s, err := proc.ReadState(v.p.StateFile()); err == nil {
		// Defined before by another agent process: keep what it knew.
		v.power, v.reason, v.since = s.Power, s.Reason, s.Since
	} else if err := proc.WriteState(v.p.StateFile(), proc.State{Power: hypervisor.StateOff, Since: v.since}); err != nil {
		return fmt.Errorf("define vm %s: %w", cfg.Name, err)
	}
	d.mu.Lock()
	d.vms[cfg.ID] = v
	d.mu.Unlock()
	return nil
}

// Attach takes over a VM defined before, running or not.
func (d *Driver) Attach(ctx context.Context, cfg hypervisor.VMConfig) (hypervisor.VMState, error) {
	if err := validate(cfg); err != nil {
		return hypervisor.VMState{}, err
	}
	v := d.newVM(cfg)
	if err := v.attach(ctx); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return hypervisor.VMState{}, fmt.Errorf("attach vm %s: %w", cfg.Name, hypervisor.ErrNotFound)
		}
		return hypervisor.VMState{}, err
	}
	d.mu.Lock()
	if old := d.vms[cfg.ID]; old != nil {
		old.release()
	}
	d.vms[cfg.ID] = v
	d.mu.Unlock()
	if u := v.unfinishedMerge(); u != "" {
		// Reported with the VM's state until the merge is finished.
		v.log.Warn("the VM has an unfinished disk merge", "merge", u)
		v.SetPower(v.State().Power, "unfinished disk merge of "+u+": it is finished when the snapshot delete is retried (the task does)")
	}
	return v.State(), nil
}

// Undefine removes a VM that is off: its disks and runtime files.
func (d *Driver) Undefine(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("delete", hypervisor.StateOff); err != nil {
		return err
	}
	var errs []error
	for _, disk := range v.cfg.Disks {
		if err := os.Remove(disk.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		// A CD-ROM image in the VM's own folder was made for it (an
		// imported VM's OVF environment): it goes with the VM.
		if v.cfg.CDROM != "" && filepath.Dir(v.cfg.CDROM) == filepath.Dir(disk.Path) {
			_ = os.Remove(v.cfg.CDROM)
		}
		_ = os.Remove(filepath.Dir(disk.Path)) // the VM's folder, if now empty
	}
	if v.p.Run != v.p.Dir {
		_ = os.RemoveAll(v.p.Run)
	}
	for _, f := range []string{v.p.StateFile(), v.p.PIDFile(), v.p.QEMULog(), v.p.ConsoleLog(), v.p.ConsoleLog() + ".1"} {
		_ = os.Remove(f)
	}
	d.mu.Lock()
	delete(d.vms, id)
	d.mu.Unlock()
	if len(errs) > 0 {
		return fmt.Errorf("delete vm %s: %w", v.cfg.Name, errors.Join(errs...))
	}
	return nil
}

func (d *Driver) State(ctx context.Context, id string) (hypervisor.VMState, error) {
	v, err := d.get(id)
	if err != nil {
		return hypervisor.VMState{}, err
	}
	return v.State(), nil
}

func (d *Driver) Start(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	return v.start(ctx)
}

// Shutdown asks the guest to power off: through its agent when it answers
// (a guest without ACPI support still obeys), else with the ACPI power
// button. A press before the guest's ACPI driver is up is lost, so the
// request is repeated every few seconds until the VM is off.
func (d *Driver) Shutdown(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("shut down", hypervisor.StateOn); err != nil {
		return err
	}
	// Mark it first: the guest may be gone before askShutdown returns,
	// and its exit must read as asked for.
	v.mu.Lock()
	repeating, runCtx := v.shuttingDown, v.runCtx
	v.shuttingDown = true
	v.mu.Unlock()
	if err := v.askShutdown(ctx); err != nil {
		v.mu.Lock()
		v.shuttingDown = repeating
		v.mu.Unlock()
		return err
	}
	if !repeating && runCtx != nil {
		go v.repeatShutdown(runCtx)
	}
	return nil
}

func (d *Driver) PowerOff(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	return v.powerOff(ctx)
}

// resetGuard is how long after QEMU starts a reset waits: a system_reset
// while the firmware is still starting up (the first moments of a run)
// leaves QEMU 7.2 executing zeroed memory, a hung guest.
var resetGuard = 2 * time.Second

func (d *Driver) Reset(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("reset", hypervisor.StateOn); err != nil {
		return err
	}
	v.mu.Lock()
	wait := resetGuard - time.Since(v.started)
	v.mu.Unlock()
	if wait > 0 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return v.command(ctx, "system_reset", nil)
}

func (d *Driver) Suspend(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("suspend", hypervisor.StateOn); err != nil {
		return err
	}
	if err := v.command(ctx, "stop", nil); err != nil {
		return err
	}
	v.SetPower(hypervisor.StateSuspended, "")
	return nil
}

func (d *Driver) Resume(ctx context.Context, id string) error {
	v, err := d.get(id)
	if err != nil {
		return err
	}
	if err := v.wrongState("resume", hypervisor.StateSuspended); err != nil {
		return err
	}
	if err := v.command(ctx, "cont", nil); err != nil {
		return err
	}
	v.SetPower(hypervisor.StateOn, "")
	return nil
}

// checkFiles makes sure the files a VM boots from exist.
func (d *Driver) checkFiles(cfg hypervisor.VMConfig) error {
	var need []string
	if cfg.Boot != nil {
		need = append(need, cfg.Boot.Kernel)
		if cfg.Boot.Initrd != "" {
			need = append(need, cfg.Boot.Initrd)
		}
	}
	if cfg.CDROM != "" {
		need = append(need, cfg.CDROM)
	}
	for _, f := range need {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("boot file: %w", err)
		}
		if fi.IsDir() {
			return fmt.Errorf("boot file %s is a directory", f)
		}
	}
	return nil
}
