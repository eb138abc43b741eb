package hypervisortest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// DefaultTimeout bounds each driver call and each wait for a state change
// when Harness.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Harness tells the suite how to make a driver and a VM.
type Harness struct {
	// New returns a driver whose VMs keep their files under dir. Calling New
	// again with the same dir models an agent restart.
	New func(t *testing.T, dir string) hypervisor.Driver
	// Config returns a VMConfig for a small VM with the given id whose Dir
	// is under dir (the suite creates dir); drivers that need disks/images
	// fill them in.
	Config func(t *testing.T, dir, id string) hypervisor.VMConfig
	// Timeout bounds each driver call and each wait for a state change.
	// Slow drivers (real QEMU) set longer timeouts.
	Timeout time.Duration
}

// env is one subtest's host: a driver over a fresh directory.
type env struct {
	t       *testing.T
	h       Harness
	dir     string
	d       hypervisor.Driver
	defined []string
}

func newEnv(t *testing.T, h Harness) *env {
	t.Helper()
	e := &env{t: t, h: h, dir: t.TempDir()}
	e.d = h.New(t, e.dir)
	if e.d == nil {
		t.Fatal("Harness.New returned a nil driver")
	}
	// Registered after New so that it runs before any cleanup New registered
	// (cleanups run last-in first-out): VMs go away while the driver works.
	t.Cleanup(e.removeAll)
	return e
}

// ctx bounds one driver call.
func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(e.t.Context(), e.h.Timeout)
	e.t.Cleanup(cancel)
	return ctx
}

// config returns the harness's VMConfig for id, in a directory of its own.
func (e *env) config(id string) hypervisor.VMConfig {
	e.t.Helper()
	dir := filepath.Join(e.dir, "vms", id)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		e.t.Fatal(err)
	}
	cfg := e.h.Config(e.t, dir, id)
	if cfg.ID != id {
		e.t.Fatalf("Harness.Config(%q) returned a config with ID %q", id, cfg.ID)
	}
	e.defined = append(e.defined, id)
	return cfg
}

// define defines a new VM and checks that it starts off.
func (e *env) define(id string) hypervisor.VMConfig {
	e.t.Helper()
	cfg := e.config(id)
	if err := e.d.Define(e.ctx(), cfg); err != nil {
		e.t.Fatalf("define vm %s: %v", id, err)
	}
	e.expect(id, hypervisor.StateOff)
	return cfg
}

// running defines and starts a VM.
func (e *env) running(id string) hypervisor.VMConfig {
	e.t.Helper()
	cfg := e.define(id)
	e.ok(e.d.Start(e.ctx(), id), "start vm "+id)
	e.expect(id, hypervisor.StateOn)
	return cfg
}

// suspended defines, starts and suspends a VM.
func (e *env) suspended(id string) hypervisor.VMConfig {
	e.t.Helper()
	cfg := e.running(id)
	e.ok(e.d.Suspend(e.ctx(), id), "suspend vm "+id)
	e.expect(id, hypervisor.StateSuspended)
	return cfg
}

// restart models the agent dying and a new one starting on the same
// directory: the old driver is closed if it can be, and is not used again.
func (e *env) restart() {
	e.t.Helper()
	if c, ok := e.d.(io.Closer); ok {
		if err := c.Close(); err != nil {
			e.t.Fatalf("close driver: %v", err)
		}
	}
	e.d = e.h.New(e.t, e.dir)
	if e.d == nil {
		e.t.Fatal("Harness.New returned a nil driver")
	}
}

// removeAll powers off and undefines every VM the test made, so that a real
// driver leaves no guest running. Errors are expected here: the test may
// have removed a VM already, or closed the driver.
func (e *env) removeAll() {
	ctx, cancel := context.WithTimeout(context.Background(), e.h.Timeout)
	defer cancel()
	for _, id := range e.defined {
		_ = e.d.PowerOff(ctx, id)
		_ = e.d.Undefine(ctx, id)
	}
}

func (e *env) ok(err error, what string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// is fails the test unless err wraps want.
func (e *env) is(err, want error, what string) {
	e.t.Helper()
	if !errors.Is(err, want) {
		e.t.Fatalf("%s: got error %v, want one wrapping %q", what, err, want)
	}
}

// expect checks the VM's power state now, without waiting.
func (e *env) expect(id, power string) hypervisor.VMState {
	e.t.Helper()
	st, err := e.d.State(e.ctx(), id)
	if err != nil {
		e.t.Fatalf("state of vm %s: %v", id, err)
	}
	if st.Power != power {
		e.t.Fatalf("vm %s: power is %q (reason %q), want %q", id, st.Power, st.Reason, power)
	}
	return st
}

// wait polls until the VM reaches power, for at most the harness timeout.
func (e *env) wait(id, power string) hypervisor.VMState {
	e.t.Helper()
	st, err := waitPower(e.t.Context(), e.d, id, power, e.h.Timeout)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

// waitPower polls State until the VM's power is want or timeout passes. It
// returns an error rather than failing so that goroutines can use it.
func waitPower(ctx context.Context, d hypervisor.Driver, id, want string, timeout time.Duration) (hypervisor.VMState, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	interval := 5 * time.Millisecond
	for {
		st, err := d.State(ctx, id)
		if err == nil && st.Power == want {
			return st, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return st, fmt.Errorf("vm %s: not %s after %v: last State error: %v", id, want, timeout, err)
			}
			return st, fmt.Errorf("vm %s: power still %q (reason %q) after %v, want %q", id, st.Power, st.Reason, timeout, want)
		case <-time.After(interval):
		}
		interval = min(interval*2, 200*time.Millisecond)
	}
}

// waitEvent reads ch until it carries id and State then shows power, for at
// most the harness timeout. Other IDs, and events for id that arrive before
// the state is visible, are skipped: what a subscriber relies on is that a
// notification follows the change, not that every notification does.
func (e *env) waitEvent(ch <-chan string, id, power string) {
	e.t.Helper()
	timeout := time.NewTimer(e.h.Timeout)
	defer timeout.Stop()
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				e.t.Fatalf("subscription closed while waiting for vm %s to be %s", id, power)
			}
			if got != id {
				continue
			}
			st, err := e.d.State(e.ctx(), id)
			if err == nil && st.Power == power {
				return
			}
		case <-timeout.C:
			e.t.Fatalf("no notification for vm %s reaching %s within %v", id, power, e.h.Timeout)
		}
	}
}
