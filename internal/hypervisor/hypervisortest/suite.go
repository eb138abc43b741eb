package hypervisortest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Run runs the conformance suite against the driver h makes. Each subtest
// gets its own driver and directory.
func Run(t *testing.T, h Harness) {
	if h.New == nil || h.Config == nil {
		t.Fatal("hypervisortest: Harness.New and Harness.Config are required")
	}
	if h.Timeout <= 0 {
		h.Timeout = DefaultTimeout
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"Info", testInfo},
		{"DefineStart", testDefineStart},
		{"StartTwice", testStartTwice},
		{"SuspendResume", testSuspendResume},
		{"Reset", testReset},
		{"Shutdown", testShutdown},
		{"PowerOff", testPowerOff},
		{"WrongState", testWrongState},
		{"UndefineRunning", testUndefineRunning},
		{"UndefineOff", testUndefineOff},
		{"UnknownID", testUnknownID},
		{"DefineIdempotent", testDefineIdempotent},
		{"Restart", testRestart},
		{"SubscribeEnds", testSubscribeEnds},
		{"Concurrent", testConcurrent},
		{"Lease", testLease},
		{"HotAdd", testHotAdd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func testInfo(t *testing.T, h Harness) {
	e := newEnv(t, h)
	info, err := e.d.Info(e.ctx())
	e.ok(err, "info")
	if info.Driver == "" {
		t.Errorf("Info().Driver is empty")
	}
	if info.Accel == "" {
		t.Errorf("Info().Accel is empty")
	}
	if info.CPUs < 1 {
		t.Errorf("Info().CPUs = %d, want at least 1", info.CPUs)
	}
	if info.MemoryBytes <= 0 {
		t.Errorf("Info().MemoryBytes = %d, want more than 0", info.MemoryBytes)
	}
}

func testDefineStart(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.define("vm1")
	e.ok(e.d.Start(e.ctx(), "vm1"), "start")
	st := e.expect("vm1", hypervisor.StateOn)
	if st.Since.IsZero() {
		t.Errorf("state after start has a zero Since")
	}
}

func testStartTwice(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.running("vm1")
	e.is(e.d.Start(e.ctx(), "vm1"), hypervisor.ErrWrongState, "start a running vm")
	e.expect("vm1", hypervisor.StateOn)
}

func testSuspendResume(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.running("vm1")
	e.ok(e.d.Suspend(e.ctx(), "vm1"), "suspend")
	e.expect("vm1", hypervisor.StateSuspended)
	e.ok(e.d.Resume(e.ctx(), "vm1"), "resume")
	e.expect("vm1", hypervisor.StateOn)
}

func testReset(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.running("vm1")
	before := e.expect("vm1", hypervisor.StateOn)
	e.ok(e.d.Reset(e.ctx(), "vm1"), "reset")
	after := e.expect("vm1", hypervisor.StateOn)
	if after.Since.Before(before.Since) {
		t.Errorf("Since went back on reset: %v, was %v", after.Since, before.Since)
	}
}

func testShutdown(t *testing.T, h Harness) {
	e := newEnv(t, h)
	events := e.d.Subscribe(t.Context())
	e.running("vm1")
	e.running("bystander")
	e.ok(e.d.Shutdown(e.ctx(), "vm1"), "shutdown")
	e.wait("vm1", hypervisor.StateOff)
	e.waitEvent(events, "vm1", hypervisor.StateOff)
	// Shutting one guest down must leave the others alone.
	e.expect("bystander", hypervisor.StateOn)
	// The VM is really off, not just reported so: it can start again.
	e.ok(e.d.Start(e.ctx(), "vm1"), "start after guest shutdown")
	e.expect("vm1", hypervisor.StateOn)
}

func testPowerOff(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.running("on")
	e.ok(e.d.PowerOff(e.ctx(), "on"), "power off a running vm")
	e.expect("on", hypervisor.StateOff)

	e.suspended("suspended")
	e.ok(e.d.PowerOff(e.ctx(), "suspended"), "power off a suspended vm")
	e.expect("suspended", hypervisor.StateOff)
}

// testWrongState checks every operation that does not apply to a power
// state: it must fail with ErrWrongState and change nothing.
func testWrongState(t *testing.T, h Harness) {
	type op struct {
		name string
		fn   func(hypervisor.Driver, context.Context, string) error
	}
	var (
		start    = op{"start", hypervisor.Driver.Start}
		shutdown = op{"shutdown", hypervisor.Driver.Shutdown}
		poweroff = op{"power off", hypervisor.Driver.PowerOff}
		reset    = op{"reset", hypervisor.Driver.Reset}
		suspend  = op{"suspend", hypervisor.Driver.Suspend}
		resume   = op{"resume", hypervisor.Driver.Resume}
	)
	cases := []struct {
		power string
		setup func(*env, string)
		ops   []op
	}{
		{hypervisor.StateOff, func(e *env, id string) { e.define(id) }, []op{shutdown, poweroff, reset, suspend, resume}},
		{hypervisor.StateOn, func(e *env, id string) { e.running(id) }, []op{start, resume}},
		{hypervisor.StateSuspended, func(e *env, id string) { e.suspended(id) }, []op{start, shutdown, reset, suspend}},
	}
	for _, c := range cases {
		t.Run(c.power, func(t *testing.T) {
			e := newEnv(t, h)
			c.setup(e, "vm1")
			for _, o := range c.ops {
				err := o.fn(e.d, e.ctx(), "vm1")
				e.is(err, hypervisor.ErrWrongState, fmt.Sprintf("%s a vm that is %s", o.name, c.power))
				e.expect("vm1", c.power)
			}
		})
	}
}

func testUndefineRunning(t *testing.T, h Harness) {
	e := newEnv(t, h)
	e.running("on")
	e.is(e.d.Undefine(e.ctx(), "on"), hypervisor.ErrWrongState, "undefine a running vm")
	e.expect("on", hypervisor.StateOn)

	e.suspended("suspended")
	e.is(e.d.Undefine(e.ctx(), "suspended"), hypervisor.ErrWrongState, "undefine a suspended vm")
	e.expect("suspended", hypervisor.StateSuspended)
}

func testUndefineOff(t *testing.T, h Harness) {
	e := newEnv(t, h)
	cfg := e.define("vm1")
	e.running("bystander")
	e.ok(e.d.Undefine(e.ctx(), "vm1"), "undefine")
	_, err := e.d.State(e.ctx(), "vm1")
	e.is(err, hypervisor.ErrNotFound, "state of an undefined vm")
	e.is(e.d.Start(e.ctx(), "vm1"), hypervisor.ErrNotFound, "start an undefined vm")
	e.is(e.d.Undefine(e.ctx(), "vm1"), hypervisor.ErrNotFound, "undefine twice")
	e.expect("bystander", hypervisor.StateOn)

	// The ID is free again: the agent reuses IDs when it recreates a VM.
	e.ok(e.d.Define(e.ctx(), cfg), "define again after undefine")
	e.expect("vm1", hypervisor.StateOff)
}

func testUnknownID(t *testing.T, h Harness) {
	e := newEnv(t, h)
	// A driver with a VM, so that "not found" is about the ID, not an empty host.
	e.running("known")
	const id = "no-such-vm"
	ops := map[string]func(context.Context, string) error{
		"undefine":  e.d.Undefine,
		"start":     e.d.Start,
		"shutdown":  e.d.Shutdown,
		"power off": e.d.PowerOff,
		"reset":     e.d.Reset,
		"suspend":   e.d.Suspend,
		"resume":    e.d.Resume,
		"state": func(ctx context.Context, id string) error {
			_, err := e.d.State(ctx, id)
			return err
		},
	}
	for name, fn := range ops {
		e.is(fn(e.ctx(), id), hypervisor.ErrNotFound, name+" an unknown vm")
	}
	// Attach of a VM that was never defined must not invent one.
	_, err := e.d.Attach(e.ctx(), e.config("never-defined"))
	e.is(err, hypervisor.ErrNotFound, "attach a vm never defined")
	e.expect("known", hypervisor.StateOn)
}

func testDefineIdempotent(t *testing.T, h Harness) {
	e := newEnv(t, h)
	cfg := e.define("vm1")
	e.ok(e.d.Define(e.ctx(), cfg), "define the same config again")
	e.expect("vm1", hypervisor.StateOff)

	cfg.MemoryBytes *= 2
	e.ok(e.d.Define(e.ctx(), cfg), "define with more memory")
	e.expect("vm1", hypervisor.StateOff)
	e.ok(e.d.Start(e.ctx(), "vm1"), "start after redefine")
	e.expect("vm1", hypervisor.StateOn)
}

// testRestart models the agent process dying and a new one attaching: VMs
// must be in the power state they were left in, and the new driver must be
// able to operate them.
func testRestart(t *testing.T, h Harness) {
	e := newEnv(t, h)
	on := e.running("on")
	suspended := e.suspended("suspended")
	off := e.define("off")
	onBefore := e.expect("on", hypervisor.StateOn)

	restartedAt := time.Now()
	e.restart()
	for _, c := range []struct {
		cfg   hypervisor.VMConfig
		power string
	}{{on, hypervisor.StateOn}, {suspended, hypervisor.StateSuspended}, {off, hypervisor.StateOff}} {
		st, err := e.d.Attach(e.ctx(), c.cfg)
		e.ok(err, "attach vm "+c.cfg.ID+" after restart")
		if st.Power != c.power {
			t.Fatalf("attach vm %s after restart: power %q (reason %q), want %q", c.cfg.ID, st.Power, st.Reason, c.power)
		}
		e.expect(c.cfg.ID, c.power)
	}
	// The VM has been on since before the restart, not since the attach.
	st := e.expect("on", hypervisor.StateOn)
	if st.Since.IsZero() || st.Since.After(restartedAt) {
		t.Errorf("after restart vm on is on since %v; it was on since %v, before the restart at %v", st.Since, onBefore.Since, restartedAt)
	}

	e.ok(e.d.PowerOff(e.ctx(), "on"), "power off after restart")
	e.expect("on", hypervisor.StateOff)
	e.ok(e.d.Resume(e.ctx(), "suspended"), "resume after restart")
	e.expect("suspended", hypervisor.StateOn)
	e.ok(e.d.PowerOff(e.ctx(), "suspended"), "power off after restart")
	e.ok(e.d.Start(e.ctx(), "off"), "start after restart")
	e.expect("off", hypervisor.StateOn)
	e.ok(e.d.PowerOff(e.ctx(), "off"), "power off after restart")
	for _, id := range []string{"on", "suspended", "off"} {
		e.ok(e.d.Undefine(e.ctx(), id), "undefine after restart")
	}
}

func testSubscribeEnds(t *testing.T, h Harness) {
	e := newEnv(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	ch := e.d.Subscribe(ctx)
	cancel()
	timeout := time.After(h.Timeout)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("Subscribe channel still open %v after its context ended", h.Timeout)
		}
	}
}

// testConcurrent drives several VMs through every transition at once while
// other goroutines read state and listen for events; run it with -race.
func testConcurrent(t *testing.T, h Harness) {
	const vms, rounds = 6, 2
	e := newEnv(t, h)
	cfgs := make([]hypervisor.VMConfig, vms)
	for i := range cfgs {
		cfgs[i] = e.config(fmt.Sprintf("vm%d", i))
	}
	ctx := t.Context()
	events := e.d.Subscribe(ctx)

	var workers, readers sync.WaitGroup
	stop := make(chan struct{})
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			case _, ok := <-events:
				if !ok {
					events = nil // ended early; keep waiting for stop
				}
			}
		}
	})
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := e.d.Info(ctx); err != nil {
				t.Errorf("info: %v", err)
				return
			}
			for _, c := range cfgs {
				if _, err := e.d.State(ctx, c.ID); err != nil && !errors.Is(err, hypervisor.ErrNotFound) {
					t.Errorf("state of vm %s: %v", c.ID, err)
					return
				}
			}
		}
	})
	for _, cfg := range cfgs {
		workers.Go(func() {
			if err := cycle(ctx, e.d, cfg, rounds, h.Timeout); err != nil {
				t.Error(err)
			}
		})
	}
	workers.Wait()
	close(stop)
	readers.Wait()
	for _, c := range cfgs {
		_, err := e.d.State(e.ctx(), c.ID)
		e.is(err, hypervisor.ErrNotFound, "state of vm "+c.ID+" after its worker undefined it")
	}
}

// cycle takes one VM through every transition and undefines it. It checks
// the state after each step, since a lost update under concurrency would
// show as a VM in the wrong state.
func cycle(ctx context.Context, d hypervisor.Driver, cfg hypervisor.VMConfig, rounds int, timeout time.Duration) error {
	type step struct {
		name string
		fn   func(context.Context, string) error
		want string
	}
	steps := []step{
		{"start", d.Start, hypervisor.StateOn},
		{"suspend", d.Suspend, hypervisor.StateSuspended},
		{"resume", d.Resume, hypervisor.StateOn},
		{"reset", d.Reset, hypervisor.StateOn},
		{"shutdown", d.Shutdown, ""}, // asynchronous: waited for below
		{"start", d.Start, hypervisor.StateOn},
		{"power off", d.PowerOff, hypervisor.StateOff},
	}
	call := func(fn func(context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return fn(ctx)
	}
	if err := call(func(ctx context.Context) error { return d.Define(ctx, cfg) }); err != nil {
		return fmt.Errorf("define vm %s: %v", cfg.ID, err)
	}
	for r := range rounds {
		for _, s := range steps {
			if err := call(func(ctx context.Context) error { return s.fn(ctx, cfg.ID) }); err != nil {
				return fmt.Errorf("round %d: %s vm %s: %v", r, s.name, cfg.ID, err)
			}
			if s.want == "" {
				if _, err := waitPower(ctx, d, cfg.ID, hypervisor.StateOff, timeout); err != nil {
					return fmt.Errorf("round %d: after %s: %v", r, s.name, err)
				}
				continue
			}
			var st hypervisor.VMState
			err := call(func(ctx context.Context) (err error) { st, err = d.State(ctx, cfg.ID); return err })
			if err != nil {
				return fmt.Errorf("round %d: state of vm %s after %s: %v", r, cfg.ID, s.name, err)
			}
			if st.Power != s.want {
				return fmt.Errorf("round %d: vm %s is %q after %s, want %q", r, cfg.ID, st.Power, s.name, s.want)
			}
		}
	}
	if err := call(func(ctx context.Context) error { return d.Undefine(ctx, cfg.ID) }); err != nil {
		return fmt.Errorf("undefine vm %s: %v", cfg.ID, err)
	}
	return nil
}

// testHotAdd checks CPU and memory hot-add on a driver that has it: a
// running VM grows within the room its config left, never shrinks, and
// keeps what it got across an agent restart.
func testHotAdd(t *testing.T, h Harness) {
	e := newEnv(t, h)
	hp, ok := e.d.(hypervisor.Hotplugger)
	if !ok {
		t.Skip("the driver has no hot-add")
	}
	step := int64(api.MemoryHotplugStep)
	cfg := e.config("vm1")
	cfg.MaxCPUs, cfg.MaxMemoryBytes = cfg.CPUs+2, cfg.MemoryBytes+2*step
	e.ok(e.d.Define(e.ctx(), cfg), "define")
	_, err := hp.HotAdd(e.ctx(), "vm1", cfg.CPUs+1, 0)
	e.is(err, hypervisor.ErrWrongState, "hot-add to a vm that is off")
	e.ok(e.d.Start(e.ctx(), "vm1"), "start")

	res, err := hp.HotAdd(e.ctx(), "vm1", cfg.CPUs+1, cfg.MemoryBytes+step)
	e.ok(err, "hot-add a vCPU and a step of memory")
	check := func(what string, hw api.VMHardware) {
		t.Helper()
		if hw.TotalCPUs() != cfg.CPUs+1 || int64(hw.TotalMemory()) != cfg.MemoryBytes+step || len(hw.HotCPUs) != 1 || len(hw.DIMMs) != 1 ||
			hw.CPUs != cfg.CPUs || int64(hw.MemoryBytes) != cfg.MemoryBytes {
			t.Fatalf("%s: hardware %+v, want %d+1 vCPUs and %d+%d bytes", what, hw, cfg.CPUs, cfg.MemoryBytes, step)
		}
	}
	check("hot-add result", res.Hardware)
	hw, err := hp.Hardware(e.ctx(), "vm1")
	e.ok(err, "hardware")
	check("hardware after hot-add", hw)
	if res.Guest == "" {
		t.Error("hot-add says nothing of the guest")
	}

	// Refused, changing nothing: less, more than the room, odd sizes.
	for what, c := range map[string]struct {
		cpus int
		mem  int64
		want error
	}{
		"remove a vCPU":       {cfg.CPUs, 0, hypervisor.ErrInvalid},
		"remove memory":       {0, cfg.MemoryBytes, hypervisor.ErrInvalid},
		"beyond max cpus":     {cfg.CPUs + 3, 0, hypervisor.ErrInvalid},
		"beyond max memory":   {0, cfg.MemoryBytes + 3*step, hypervisor.ErrInvalid},
		"less than one block": {0, cfg.MemoryBytes + step + 1<<20, hypervisor.ErrInvalid},
	} {
		_, err := hp.HotAdd(e.ctx(), "vm1", c.cpus, c.mem)
		e.is(err, c.want, what)
	}
	hw, err = hp.Hardware(e.ctx(), "vm1")
	e.ok(err, "hardware")
	check("hardware after refused hot-adds", hw)
	// Asking for what it has is no change.
	_, err = hp.HotAdd(e.ctx(), "vm1", cfg.CPUs+1, cfg.MemoryBytes+step)
	e.ok(err, "hot-add to the size it has")

	// A new agent finds the hot-added hardware.
	e.restart()
	if _, err := e.d.Attach(e.ctx(), cfg); err != nil {
		t.Fatalf("attach: %v", err)
	}
	hw, err = e.d.(hypervisor.Hotplugger).Hardware(e.ctx(), "vm1")
	e.ok(err, "hardware after an agent restart")
	check("hardware after an agent restart", hw)

	// Without room in its config a VM gets nothing.
	e.running("fixed")
	_, err = e.d.(hypervisor.Hotplugger).HotAdd(e.ctx(), "fixed", 0, 0)
	e.ok(err, "hot-add nothing")
	_, err = e.d.(hypervisor.Hotplugger).HotAdd(e.ctx(), "fixed", 2, 0)
	e.is(err, hypervisor.ErrWrongState, "hot-add a vCPU to a vm without max-cpus")
}
