package sim_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/hypervisortest"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
)

func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		opts sim.Options
	}{
		{"defaults", sim.Options{}},
		{"instant shutdown", sim.Options{ShutdownDelay: -1}},
		{"slow boot", sim.Options{BootDelay: 30 * time.Millisecond, ShutdownDelay: 10 * time.Millisecond}},
	} {
		t.Run(c.name, func(t *testing.T) {
			hypervisortest.Run(t, hypervisortest.Harness{
				New: func(t *testing.T, dir string) hypervisor.Driver {
					return newDriver(t, c.opts)
				},
				Config:  vmConfig,
				Timeout: 5 * time.Second,
			})
		})
	}
}

// newDriver makes a driver that logs to the test and is closed with it.
func newDriver(t *testing.T, opts sim.Options) *sim.Driver {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	d := sim.New(opts)
	t.Cleanup(func() { d.Close() })
	return d
}

func vmConfig(t *testing.T, dir, id string) hypervisor.VMConfig {
	return hypervisor.VMConfig{
		ID:          id,
		Name:        "test-" + id,
		CPUs:        1,
		MemoryBytes: 64 << 20,
		Disks:       []hypervisor.DiskConfig{{Name: "root", Path: filepath.Join(dir, "root.qcow2"), SizeBytes: 1 << 30, Bus: "virtio"}},
		NICs:        []hypervisor.NICConfig{{Name: "eth0", MAC: "52:54:00:00:00:01", Model: "virtio", PortGroup: "pg1"}},
		Dir:         dir,
	}
}

// clock is a settable Options.Now, for tests about what happens while no
// driver is watching.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// host is one test's simulated host: a driver over a directory that a
// restarted driver can pick up.
type host struct {
	t    *testing.T
	opts sim.Options
	dir  string
	d    *sim.Driver
	cfgs map[string]hypervisor.VMConfig
}

func newHost(t *testing.T, opts sim.Options) *host {
	return &host{t: t, opts: opts, dir: t.TempDir(), d: newDriver(t, opts), cfgs: map[string]hypervisor.VMConfig{}}
}

func (h *host) define(id string, labels map[string]string) hypervisor.VMConfig {
	h.t.Helper()
	cfg := vmConfig(h.t, filepath.Join(h.dir, id), id)
	cfg.Labels = labels
	must(h.t, h.d.Define(h.t.Context(), cfg))
	h.cfgs[id] = cfg
	return cfg
}

func (h *host) running(id string, labels map[string]string) hypervisor.VMConfig {
	h.t.Helper()
	cfg := h.define(id, labels)
	must(h.t, h.d.Start(h.t.Context(), id))
	return cfg
}

func (h *host) state(id string) hypervisor.VMState {
	h.t.Helper()
	st, err := h.d.State(h.t.Context(), id)
	must(h.t, err)
	return st
}

// restart closes the driver, as the agent dying does, and attaches every VM
// with a new one.
func (h *host) restart() map[string]hypervisor.VMState {
	h.t.Helper()
	must(h.t, h.d.Close())
	h.d = newDriver(h.t, h.opts)
	out := map[string]hypervisor.VMState{}
	for id, cfg := range h.cfgs {
		st, err := h.d.Attach(h.t.Context(), cfg)
		must(h.t, err)
		out[id] = st
	}
	return out
}

// waitOff waits for the subscription to say id changed, then checks it is off.
func (h *host) waitOff(events <-chan string, id string) hypervisor.VMState {
	h.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-events:
			if got != id {
				continue
			}
			st := h.state(id)
			if st.Power != hypervisor.StateOff {
				h.t.Fatalf("vm %s: notified, but power is %q", id, st.Power)
			}
			return st
		case <-timeout:
			h.t.Fatalf("vm %s: no notification within 5s", id)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestInfo(t *testing.T) {
	info, err := sim.New(sim.Options{CPUs: 48, MemoryBytes: 256 << 30}).Info(t.Context())
	must(t, err)
	want := hypervisor.HostInfo{Driver: "sim", Accel: "sim", Version: "sim 1", CPUs: 48, MemoryBytes: 256 << 30}
	if info != want {
		t.Errorf("Info() = %+v, want %+v", info, want)
	}
	info, err = sim.New(sim.Options{}).Info(t.Context())
	must(t, err)
	if info.CPUs != sim.DefaultCPUs || info.MemoryBytes != sim.DefaultMemoryBytes {
		t.Errorf("Info() with zero options = %+v, want the defaults", info)
	}
}

func TestIgnoreACPI(t *testing.T) {
	h := newHost(t, sim.Options{ShutdownDelay: 10 * time.Millisecond})
	events := h.d.Subscribe(t.Context())
	ignore := map[string]string{sim.LabelIgnoreACPI: "true"}
	h.running("stubborn", ignore)
	h.running("polite", nil)
	// The stubborn guest is asked first, so if it were going to act on the
	// request it would be off by the time the polite one is.
	must(t, h.d.Shutdown(t.Context(), "stubborn"))
	must(t, h.d.Shutdown(t.Context(), "polite"))
	h.waitOff(events, "polite")
	if st := h.state("stubborn"); st.Power != hypervisor.StateOn {
		t.Fatalf("guest ignoring ACPI: power %q after Shutdown, want on", st.Power)
	}
	// The caller's fallback after its timeout.
	must(t, h.d.PowerOff(t.Context(), "stubborn"))
	if st := h.state("stubborn"); st.Power != hypervisor.StateOff {
		t.Fatalf("power off after ignored shutdown: power %q", st.Power)
	}
}

func TestIgnoreACPIWhileNobodyWatches(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{ShutdownDelay: time.Minute, Now: clk.Now})
	h.running("stubborn", map[string]string{sim.LabelIgnoreACPI: "true"})
	h.running("polite", nil)
	must(t, h.d.Shutdown(t.Context(), "stubborn"))
	must(t, h.d.Shutdown(t.Context(), "polite"))
	clk.Advance(time.Hour)
	got := h.restart()
	if got["stubborn"].Power != hypervisor.StateOn {
		t.Errorf("guest ignoring ACPI is %q an hour after Shutdown, want on", got["stubborn"].Power)
	}
	if got["polite"].Power != hypervisor.StateOff {
		t.Errorf("guest honouring ACPI is %q an hour after Shutdown, want off", got["polite"].Power)
	}
}

func TestShutdownDelay(t *testing.T) {
	const delay = 100 * time.Millisecond
	h := newHost(t, sim.Options{ShutdownDelay: delay})
	events := h.d.Subscribe(t.Context())
	h.running("vm1", nil)
	asked := time.Now()
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	st := h.waitOff(events, "vm1")
	// Only a lower bound: a slow machine may take longer, never shorter.
	if took := st.Since.Sub(asked); took < delay {
		t.Errorf("guest was off %v after Shutdown, want at least ShutdownDelay %v", took, delay)
	}
	if st.Reason != "guest shut down" {
		t.Errorf("reason after guest shutdown = %q, want %q", st.Reason, "guest shut down")
	}
	must(t, h.d.Start(t.Context(), "vm1"))
	if st := h.state("vm1"); st.Reason != "" {
		t.Errorf("reason after start = %q, want empty", st.Reason)
	}
}

func TestShutdownWaitsForBoot(t *testing.T) {
	const boot, delay = 150 * time.Millisecond, 20 * time.Millisecond
	h := newHost(t, sim.Options{BootDelay: boot, ShutdownDelay: delay})
	events := h.d.Subscribe(t.Context())
	started := time.Now()
	h.running("vm1", nil)
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	st := h.waitOff(events, "vm1")
	if took := st.Since.Sub(started); took < boot+delay {
		t.Errorf("guest shut down %v after Start, want at least BootDelay+ShutdownDelay %v", took, boot+delay)
	}
}

func TestPowerOffCancelsShutdown(t *testing.T) {
	h := newHost(t, sim.Options{ShutdownDelay: time.Hour})
	events := h.d.Subscribe(t.Context())
	h.running("vm1", nil)
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	must(t, h.d.Shutdown(t.Context(), "vm1")) // pressing the button twice is harmless
	if st := h.state("vm1"); st.Power != hypervisor.StateOn {
		t.Fatalf("power %q while the guest is still shutting down, want on", st.Power)
	}
	must(t, h.d.PowerOff(t.Context(), "vm1"))
	st := h.state("vm1")
	if st.Power != hypervisor.StateOff || st.Reason != "" {
		t.Fatalf("after power off: %+v, want off with no reason", st)
	}
	must(t, h.d.Start(t.Context(), "vm1"))
	select {
	case id := <-events:
		t.Fatalf("event for %s, but nothing changed by itself", id)
	default:
	}
}

func TestAttachCatchesUpShutdown(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{ShutdownDelay: time.Minute, Now: clk.Now})
	h.running("vm1", nil)
	asked := clk.Now()
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	clk.Advance(2 * time.Minute)
	st := h.restart()["vm1"]
	want := hypervisor.VMState{Power: hypervisor.StateOff, Reason: "guest shut down", Since: asked.Add(time.Minute)}
	if st.Power != want.Power || st.Reason != want.Reason || !st.Since.Equal(want.Since) {
		t.Errorf("attach after the shutdown completed unseen = %+v, want %+v", st, want)
	}
}

func TestAttachResumesPendingShutdown(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{ShutdownDelay: time.Minute, Now: clk.Now})
	h.running("vm1", nil)
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	// Attach a moment before the guest finishes: the new driver must finish
	// the shutdown it did not start, and say so.
	clk.Advance(time.Minute - time.Millisecond)
	must(t, h.d.Close())
	h.d = newDriver(t, h.opts)
	events := h.d.Subscribe(t.Context())
	st, err := h.d.Attach(t.Context(), h.cfgs["vm1"])
	must(t, err)
	if st.Power != hypervisor.StateOn {
		t.Fatalf("attach before the shutdown completed: power %q, want on", st.Power)
	}
	h.waitOff(events, "vm1")
}

func TestSuspendFreezesShutdown(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{ShutdownDelay: time.Minute, Now: clk.Now})
	h.running("vm1", nil)
	asked := clk.Now()
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	clk.Advance(30 * time.Second)
	must(t, h.d.Suspend(t.Context(), "vm1"))
	clk.Advance(time.Hour)
	if st := h.restart()["vm1"]; st.Power != hypervisor.StateSuspended {
		t.Fatalf("suspended guest is %q an hour later, want suspended", st.Power)
	}
	must(t, h.d.Resume(t.Context(), "vm1"))
	clk.Advance(29 * time.Second) // 59s of guest time
	if st := h.restart()["vm1"]; st.Power != hypervisor.StateOn {
		t.Fatalf("guest is %q after 59s of its 60s shutdown, want on", st.Power)
	}
	clk.Advance(2 * time.Second)
	st := h.restart()["vm1"]
	if st.Power != hypervisor.StateOff || !st.Since.Equal(asked.Add(time.Hour+time.Minute)) {
		t.Fatalf("after 61s of guest time: %+v, want off since %v", st, asked.Add(time.Hour+time.Minute))
	}
}

func TestBootDelayWhileNobodyWatches(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{BootDelay: 10 * time.Minute, ShutdownDelay: time.Minute, Now: clk.Now})
	h.running("vm1", nil)
	started := clk.Now()
	clk.Advance(time.Minute)
	must(t, h.d.Shutdown(t.Context(), "vm1"))
	clk.Advance(9 * time.Minute)
	if st := h.restart()["vm1"]; st.Power != hypervisor.StateOn {
		t.Fatalf("guest is %q right after booting, want on for its shutdown time", st.Power)
	}
	clk.Advance(time.Minute)
	st := h.restart()["vm1"]
	if st.Power != hypervisor.StateOff || !st.Since.Equal(started.Add(11*time.Minute)) {
		t.Fatalf("after boot and shutdown: %+v, want off since %v", st, started.Add(11*time.Minute))
	}
}

// Since is when the current state began, so it moves with every change of
// state and with Reset, which starts the guest again.
func TestSince(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{ShutdownDelay: time.Hour, Now: clk.Now})
	defined := clk.Now()
	h.define("vm1", nil)
	steps := []struct {
		name string
		op   func(context.Context, string) error
	}{
		{"start", h.d.Start},
		{"shutdown", h.d.Shutdown}, // a request only: the state has not changed
		{"suspend", h.d.Suspend},
		{"resume", h.d.Resume},
		{"reset", h.d.Reset},
		{"power off", h.d.PowerOff},
	}
	want := defined
	if got := h.state("vm1").Since; !got.Equal(want) {
		t.Fatalf("since after define = %v, want %v", got, want)
	}
	for _, s := range steps {
		clk.Advance(time.Second)
		must(t, s.op(t.Context(), "vm1"))
		if s.name != "shutdown" {
			want = clk.Now()
		}
		if got := h.state("vm1").Since; !got.Equal(want) {
			t.Errorf("since after %s = %v, want %v", s.name, got, want)
		}
	}
}

func TestDefineAfterRestartKeepsPower(t *testing.T) {
	h := newHost(t, sim.Options{})
	cfg := h.running("vm1", nil)
	must(t, h.d.Close())
	h.d = newDriver(t, h.opts)
	must(t, h.d.Define(t.Context(), cfg))
	if st := h.state("vm1"); st.Power != hypervisor.StateOn {
		t.Fatalf("define instead of attach after restart: power %q, want on", st.Power)
	}
}

func TestFiles(t *testing.T) {
	h := newHost(t, sim.Options{})
	cfg := h.define("made", nil) // its directory does not exist yet
	if _, err := os.Stat(filepath.Join(cfg.Dir, sim.StateFile)); err != nil {
		t.Fatalf("state file after define: %v", err)
	}
	if _, err := os.Stat(cfg.Disks[0].Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sim touched the disk path %s: %v", cfg.Disks[0].Path, err)
	}
	for _, op := range []func(context.Context, string) error{h.d.Start, h.d.Suspend, h.d.Resume, h.d.PowerOff} {
		must(t, op(t.Context(), "made"))
	}
	if names := dirNames(t, cfg.Dir); !slices.Equal(names, []string{sim.StateFile}) {
		t.Errorf("files in the vm directory after power operations: %v, want only %s", names, sim.StateFile)
	}
	must(t, h.d.Undefine(t.Context(), "made"))
	if _, err := os.Stat(cfg.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("directory sim made is still there after undefine: %v", err)
	}

	// A directory sim made but someone else also wrote to stays, with
	// their file.
	cfg = h.define("shared", nil)
	must(t, os.WriteFile(filepath.Join(cfg.Dir, "console.log"), nil, 0o640))
	must(t, h.d.Undefine(t.Context(), "shared"))
	if names := dirNames(t, cfg.Dir); !slices.Equal(names, []string{"console.log"}) {
		t.Errorf("after undefine a shared directory holds %v, want only console.log", names)
	}

	// A directory the agent made, with its files, is the agent's.
	dir := filepath.Join(h.dir, "given")
	must(t, os.MkdirAll(dir, 0o750))
	must(t, os.WriteFile(filepath.Join(dir, "agent.log"), nil, 0o640))
	cfg = vmConfig(t, dir, "given")
	must(t, h.d.Define(t.Context(), cfg))
	must(t, h.d.Undefine(t.Context(), "given"))
	if names := dirNames(t, dir); !slices.Equal(names, []string{"agent.log"}) {
		t.Errorf("after undefine the agent's directory holds %v, want only agent.log", names)
	}
}

func TestRedefineMovesDir(t *testing.T) {
	h := newHost(t, sim.Options{})
	cfg := h.running("vm1", nil)
	old := cfg.Dir
	cfg.Dir = filepath.Join(h.dir, "elsewhere")
	must(t, h.d.Define(t.Context(), cfg))
	if _, err := os.Stat(filepath.Join(cfg.Dir, sim.StateFile)); err != nil {
		t.Errorf("state file in the new directory: %v", err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old directory still there: %v", err)
	}
	if st := h.state("vm1"); st.Power != hypervisor.StateOn {
		t.Errorf("power %q after moving the definition, want on", st.Power)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestBadInput(t *testing.T) {
	h := newHost(t, sim.Options{})
	good := vmConfig(t, filepath.Join(h.dir, "vm1"), "vm1")
	for name, mutate := range map[string]func(*hypervisor.VMConfig){
		"no id":     func(c *hypervisor.VMConfig) { c.ID = "" },
		"no dir":    func(c *hypervisor.VMConfig) { c.Dir = "" },
		"no cpus":   func(c *hypervisor.VMConfig) { c.CPUs = 0 },
		"no memory": func(c *hypervisor.VMConfig) { c.MemoryBytes = -1 },
	} {
		cfg := good
		mutate(&cfg)
		if err := h.d.Define(t.Context(), cfg); err == nil {
			t.Errorf("define with %s: no error", name)
		}
	}
	if _, err := os.Stat(good.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rejected definitions left a directory behind: %v", err)
	}

	// A state file belongs to one VM; another ID in the same directory is a
	// mix-up, not a new VM.
	must(t, h.d.Define(t.Context(), good))
	other := good
	other.ID = "vm2"
	h2 := newDriver(t, sim.Options{})
	if _, err := h2.Attach(t.Context(), other); err == nil || errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("attach vm2 over vm1's directory: %v, want a mismatch error", err)
	}
}

func TestSubscribeNeverDrops(t *testing.T) {
	h := newHost(t, sim.Options{ShutdownDelay: -1})
	events := h.d.Subscribe(t.Context())
	ids := []string{"a", "b", "c", "d"}
	for _, id := range ids {
		h.running(id, nil)
		must(t, h.d.Shutdown(t.Context(), id))
	}
	// Nobody reads while the guests shut down: the driver must not block,
	// and must not forget.
	for _, id := range ids {
		if _, err := waitOffByPolling(t, h.d, id); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < len(ids) {
		select {
		case id := <-events:
			got = append(got, id)
		case <-timeout:
			t.Fatalf("received %v, want all of %v", got, ids)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("received %v, want %v once each", got, ids)
	}
}

func waitOffByPolling(t *testing.T, d *sim.Driver, id string) (hypervisor.VMState, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := d.State(t.Context(), id)
		if err != nil || st.Power == hypervisor.StateOff || time.Now().After(deadline) {
			if err == nil && st.Power != hypervisor.StateOff {
				err = errors.New("vm " + id + " not off after 5s")
			}
			return st, err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	d := sim.New(sim.Options{ShutdownDelay: time.Hour})
	dir := t.TempDir()
	cfg := vmConfig(t, dir, "vm1")
	must(t, d.Define(t.Context(), cfg))
	must(t, d.Start(t.Context(), "vm1"))
	must(t, d.Shutdown(t.Context(), "vm1")) // leaves a timer pending
	subs := []<-chan string{d.Subscribe(t.Context()), d.Subscribe(t.Context())}

	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after 5s with a shutdown pending")
	}
	must(t, d.Close())
	for i, ch := range subs {
		if _, ok := <-ch; ok {
			t.Errorf("subscription %d still open after Close", i)
		}
	}
	if _, ok := <-d.Subscribe(t.Context()); ok {
		t.Errorf("Subscribe after Close returned an open channel")
	}
	if err := d.Start(t.Context(), "vm1"); !errors.Is(err, sim.ErrClosed) {
		t.Errorf("start after Close: %v, want ErrClosed", err)
	}
	if _, err := d.Info(t.Context()); !errors.Is(err, sim.ErrClosed) {
		t.Errorf("info after Close: %v, want ErrClosed", err)
	}
	// Close let go of the VM without touching it.
	st, err := sim.New(sim.Options{}).Attach(t.Context(), cfg)
	must(t, err)
	if st.Power != hypervisor.StateOn {
		t.Errorf("vm is %q after the driver closed, want on", st.Power)
	}
	// Close waited for the driver's goroutines; allow the runtime a moment
	// to retire them.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestErrorMessages(t *testing.T) {
	h := newHost(t, sim.Options{})
	h.running("vm1", nil)
	err := h.d.Start(t.Context(), "vm1")
	if !errors.Is(err, hypervisor.ErrWrongState) {
		t.Fatalf("start a running vm: %v", err)
	}
	// The operator reading this must learn what, to what, and why.
	for _, want := range []string{"start", `"vm1"`, "on"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func BenchmarkPowerCycle(b *testing.B) {
	d := sim.New(sim.Options{})
	defer d.Close()
	ctx := context.Background()
	cfg := hypervisor.VMConfig{ID: "vm", CPUs: 1, MemoryBytes: 1 << 30, Dir: b.TempDir()}
	if err := d.Define(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := d.Start(ctx, "vm"); err != nil {
			b.Fatal(err)
		}
		if err := d.PowerOff(ctx, "vm"); err != nil {
			b.Fatal(err)
		}
	}
}

// Sim models the same storage operations as qemu, held to the same suite.
func TestStorageConformance(t *testing.T) {
	hypervisortest.RunStorage(t, hypervisortest.Harness{
		New:     func(t *testing.T, dir string) hypervisor.Driver { return newDriver(t, sim.Options{}) },
		Config:  vmConfig,
		Timeout: 5 * time.Second,
	})
}

// Sim models NIC hot-plug as qemu does it, held to the same suite.
func TestNICConformance(t *testing.T) {
	hypervisortest.RunNICs(t, hypervisortest.Harness{
		New:     func(t *testing.T, dir string) hypervisor.Driver { return newDriver(t, sim.Options{}) },
		Config:  vmConfig,
		Timeout: 5 * time.Second,
	})
}
