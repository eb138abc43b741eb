package sim_test

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// pair is two simulated hosts to migrate between, on one clock (nil: the
// real one).
type pair struct {
	t        *testing.T
	clk      *clock
	src, dst *host
}

func newPair(t *testing.T, clk *clock) *pair {
	opts := sim.Options{ShutdownDelay: 10 * time.Millisecond}
	if clk != nil {
		opts.Now = clk.Now
	}
	return &pair{t: t, clk: clk, src: newHost(t, opts), dst: newHost(t, opts)}
}

// running starts a VM on the source.
func (p *pair) running(id string, memory int64, labels map[string]string) hypervisor.VMConfig {
	p.t.Helper()
	cfg := vmConfig(p.t, filepath.Join(p.src.dir, id), id)
	cfg.MemoryBytes, cfg.Labels = memory, labels
	must(p.t, p.src.d.Define(p.t.Context(), cfg))
	must(p.t, p.src.d.Start(p.t.Context(), id))
	p.src.cfgs[id] = cfg
	return cfg
}

// incoming has the target receive the source's VM id, as the agent does:
// the same definition in a directory of the target's.
func (p *pair) incoming(id string, disks bool) (hypervisor.VMConfig, hypervisor.Incoming) {
	p.t.Helper()
	cfg := p.src.cfgs[id]
	cfg.Dir = filepath.Join(p.dst.dir, id)
	in, err := p.dst.d.Incoming(p.t.Context(), cfg, hypervisor.IncomingOptions{Address: "127.0.0.1", Disks: disks})
	must(p.t, err)
	if in.URI != "sim://127.0.0.1/"+id {
		p.t.Errorf("incoming URI %q", in.URI)
	}
	if (in.NBD != "") != disks {
		p.t.Errorf("incoming NBD %q with disks %v", in.NBD, disks)
	}
	p.dst.cfgs[id] = cfg
	return cfg, in
}

func (p *pair) status(id string) hypervisor.MigrationStatus {
	p.t.Helper()
	st, err := p.src.d.MigrationStatus(p.t.Context(), id)
	must(p.t, err)
	return st
}

// wait polls the source until its migration of id ends; with a fake clock
// it moves the clock instead of waiting.
func (p *pair) wait(id string) hypervisor.MigrationStatus {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.status(id)
		switch st.State {
		case hypervisor.MigrationCompleted, hypervisor.MigrationFailed, hypervisor.MigrationCancelled:
			return st
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("migration of %s still %+v after 10s", id, st)
		}
		if p.clk != nil {
			p.clk.Advance(time.Second)
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// finish ends a completed migration as the agent does.
func (p *pair) finish(id string) {
	p.t.Helper()
	must(p.t, p.dst.d.FinishIncoming(p.t.Context(), id))
	must(p.t, p.src.d.Release(p.t.Context(), id, true))
}

// expected is a migration worked out from the model in model.go's
// comment, independently of the driver's code.
type expected struct {
	passes      int64
	total       time.Duration
	downtime    time.Duration
	transferred float64
	failed      bool
}

func expect(memory, dirty, bandwidth float64, limit time.Duration, autoConverge bool, ratio, diskUsed float64) expected {
	eff := bandwidth * ratio
	t := 0.050 + diskUsed/bandwidth
	send, throttle, wire := memory, 0.0, 0.0
	for pass := int64(1); pass <= 30; pass++ {
		rate := dirty * (1 - throttle)
		dt := send / eff
		t += dt
		wire += send / ratio
		dirtied := math.Min(rate*dt, memory)
		if dirtied/eff <= limit.Seconds() {
			down := dirtied/eff + 0.005
			return expected{passes: pass, total: seconds(t + down), downtime: seconds(down), transferred: wire + dirtied/ratio}
		}
		if autoConverge && dirtied > send/ratio/2 {
			throttle = math.Min(throttle+0.2, 0.99)
		}
		send = dirtied
	}
	return expected{passes: 30, total: seconds(t), transferred: wire, failed: true}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func near(got, want time.Duration) bool { return (got - want).Abs() <= time.Millisecond }

func nearBytes(got int64, want float64) bool {
	return math.Abs(float64(got)-want) <= math.Max(want*1e-6, 16)
}

// The model's numbers, on a fake clock so that they are exact: idle and
// busy guests, bandwidth caps, compression, disks, auto-converge.
func TestMigrationModel(t *testing.T) {
	for _, c := range []struct {
		name   string
		memory int64
		labels map[string]string
		to     hypervisor.MigrateTarget
		disks  bool
		want   expected
		passes int64 // when the case is about the count, checked too
	}{
		{name: "idle 1GiB at 1GiB/s", memory: gib,
			want: expect(gib, 0, gib, 300*time.Millisecond, false, 1, 0), passes: 1},
		{name: "dirtying 512MiB/s", memory: 256 * mib, labels: map[string]string{sim.LabelDirtyRate: "512MiB"},
			to:   hypervisor.MigrateTarget{DowntimeLimit: 10 * time.Millisecond},
			want: expect(256*mib, 512*mib, gib, 10*time.Millisecond, false, 1, 0), passes: 5},
		{name: "dirtying 512MiB/s, default downtime limit", memory: gib, labels: map[string]string{sim.LabelDirtyRate: "512MiB"},
			want: expect(gib, 512*mib, gib, 300*time.Millisecond, false, 1, 0), passes: 2},
		{name: "half the bandwidth", memory: gib, to: hypervisor.MigrateTarget{MaxBandwidth: 512 * mib},
			want: expect(gib, 0, 512*mib, 300*time.Millisecond, false, 1, 0)},
		{name: "zstd", memory: 256 * mib, labels: map[string]string{sim.LabelDirtyRate: "512MiB"},
			to:   hypervisor.MigrateTarget{DowntimeLimit: 10 * time.Millisecond, Compress: "zstd"},
			want: expect(256*mib, 512*mib, gib, 10*time.Millisecond, false, 2, 0)},
		{name: "disks copied first", memory: 128 * mib, labels: map[string]string{sim.LabelDiskUsed: "300MiB"}, disks: true,
			want: expect(128*mib, 0, gib, 300*time.Millisecond, false, 1, 300*mib)},
		{name: "disk data ignored with shared storage", memory: 128 * mib, labels: map[string]string{sim.LabelDiskUsed: "300MiB"},
			want: expect(128*mib, 0, gib, 300*time.Millisecond, false, 1, 0)},
		{name: "dirtying 2GiB/s with auto-converge", memory: 64 * mib, labels: map[string]string{sim.LabelDirtyRate: "2GiB"},
			to:   hypervisor.MigrateTarget{DowntimeLimit: 5 * time.Millisecond, AutoConverge: true},
			want: expect(64*mib, 2*gib, gib, 5*time.Millisecond, true, 1, 0), passes: 7},
		{name: "dirtying 2GiB/s", memory: 64 * mib, labels: map[string]string{sim.LabelDirtyRate: "2GiB"},
			to:   hypervisor.MigrateTarget{DowntimeLimit: 5 * time.Millisecond},
			want: expect(64*mib, 2*gib, gib, 5*time.Millisecond, false, 1, 0), passes: sim.MaxMigrationPasses},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, newClock())
			p.running("vm1", c.memory, c.labels)
			_, in := p.incoming("vm1", c.disks)
			to := c.to
			to.URI, to.NBD = in.URI, in.NBD
			must(t, p.src.d.MigrateOut(t.Context(), "vm1", to))
			st := p.wait("vm1")
			t.Logf("%+v", st)
			w := c.want
			if c.passes != 0 && w.passes != c.passes {
				t.Fatalf("the test's own model makes %d passes, want %d: fix the test", w.passes, c.passes)
			}
			if st.Pass != w.passes || !near(st.TotalTime, w.total) || !near(st.Downtime, w.downtime) || !nearBytes(st.TransferredBytes, w.transferred) {
				t.Errorf("got %d passes in %v, downtime %v, %d bytes sent; want %d passes in %v, downtime %v, %.0f bytes",
					st.Pass, st.TotalTime, st.Downtime, st.TransferredBytes, w.passes, w.total, w.downtime, w.transferred)
			}
			if st.TotalBytes != c.memory {
				t.Errorf("total bytes %d, want the memory %d", st.TotalBytes, c.memory)
			}
			if w.failed {
				if st.State != hypervisor.MigrationFailed || st.RemainingBytes == 0 || st.Downtime != 0 {
					t.Errorf("a migration that cannot converge: %+v", st)
				}
			} else if st.State != hypervisor.MigrationCompleted || st.RemainingBytes != 0 {
				t.Errorf("state %s, %d bytes remaining, want completed with none", st.State, st.RemainingBytes)
			}
			if st := p.src.state("vm1"); st.Power != hypervisor.StateOn {
				t.Errorf("source vm is %s after the migration, want on until released", st.Power)
			}
		})
	}
}

// Halving the bandwidth doubles the time spent sending.
func TestMigrationBandwidth(t *testing.T) {
	took := map[int64]time.Duration{}
	for _, bw := range []int64{0, 512 * mib} {
		p := newPair(t, newClock())
		p.running("vm1", gib, nil)
		_, in := p.incoming("vm1", false)
		must(t, p.src.d.MigrateOut(t.Context(), "vm1", hypervisor.MigrateTarget{URI: in.URI, MaxBandwidth: bw}))
		took[bw] = p.wait("vm1").TotalTime - sim.MigrationSetupTime - sim.SwitchoverTime
	}
	if !near(took[0], time.Second) || !near(took[512*mib], 2*time.Second) {
		t.Errorf("sending 1GiB took %v by default and %v at 512MiB/s, want 1s and 2s", took[0], took[512*mib])
	}
}

// The states follow one another as the model says, with the counters
// where they should be in between.
func TestMigrationProgress(t *testing.T) {
	clk := newClock()
	p := newPair(t, clk)
	p.running("vm1", gib, map[string]string{sim.LabelDiskUsed: "512MiB"})
	_, in := p.incoming("vm1", true)
	must(t, p.src.d.MigrateOut(t.Context(), "vm1", hypervisor.MigrateTarget{URI: in.URI, NBD: in.NBD}))
	steps := []struct {
		after time.Duration // since the start
		check func(st hypervisor.MigrationStatus) bool
	}{
		{10 * time.Millisecond, func(st hypervisor.MigrationStatus) bool {
			return st.State == hypervisor.MigrationSetup && st.DiskDone == 0 && st.TransferredBytes == 0 && st.DiskTotal == 512*mib
		}},
		{300 * time.Millisecond, func(st hypervisor.MigrationStatus) bool { // a quarter second into the disks
			return st.State == hypervisor.MigrationMirroring && nearBytes(st.DiskDone, 256*mib) && st.Pass == 0
		}},
		{1050 * time.Millisecond, func(st hypervisor.MigrationStatus) bool { // half a second into the memory
			return st.State == hypervisor.MigrationActive && st.DiskDone == 512*mib && st.Pass == 1 &&
				nearBytes(st.TransferredBytes, 512*mib) && nearBytes(st.RemainingBytes, 512*mib) && st.TotalTime == 1050*time.Millisecond
		}},
		{1600 * time.Millisecond, func(st hypervisor.MigrationStatus) bool {
			return st.State == hypervisor.MigrationCompleted && st.TotalTime == 1555*time.Millisecond && st.Downtime == sim.SwitchoverTime
		}},
	}
	start := clk.Now()
	for _, s := range steps {
		clk.Advance(start.Add(s.after).Sub(clk.Now()))
		if st := p.status("vm1"); !s.check(st) {
			t.Errorf("%v after the start: %+v", s.after, st)
		}
	}
	// The end is for good.
	clk.Advance(time.Hour)
	if st := p.status("vm1"); st.State != hypervisor.MigrationCompleted || st.TotalTime != 1555*time.Millisecond {
		t.Errorf("an hour later: %+v", st)
	}
}

// A guest dirtying faster than the link fails without auto-converge, with
// an error that says why and what to do, and keeps running; retried with
// auto-converge it moves.
func TestMigrationNeedsAutoConverge(t *testing.T) {
	p := newPair(t, newClock())
	p.running("vm1", 64*mib, map[string]string{sim.LabelDirtyRate: "2GiB"})
	_, in := p.incoming("vm1", false)
	to := hypervisor.MigrateTarget{URI: in.URI, DowntimeLimit: 5 * time.Millisecond}
	must(t, p.src.d.MigrateOut(t.Context(), "vm1", to))
	st := p.wait("vm1")
	if st.State != hypervisor.MigrationFailed || st.Pass != sim.MaxMigrationPasses {
		t.Fatalf("without auto-converge: %+v", st)
	}
	for _, want := range []string{"dirty rate", "exceeds the bandwidth", "auto-converge", "more bandwidth"} {
		if !strings.Contains(st.Error, want) {
			t.Errorf("error %q does not say %q", st.Error, want)
		}
	}
	if st := p.src.state("vm1"); st.Power != hypervisor.StateOn {
		t.Fatalf("source vm is %s after a failed migration", st.Power)
	}
	// The target still waits: the agent may try again.
	to.AutoConverge = true
	must(t, p.src.d.MigrateOut(t.Context(), "vm1", to))
	if st := p.wait("vm1"); st.State != hypervisor.MigrationCompleted || st.Pass <= 1 {
		t.Fatalf("with auto-converge: %+v", st)
	}
	p.finish("vm1")
}

// A whole migration on the real clock: the timer completes it; then the
// VM runs on the target only, and a restarted target still has it.
func TestMigrationEndToEnd(t *testing.T) {
	p := newPair(t, nil)
	p.running("vm1", 32*mib, map[string]string{sim.LabelDirtyRate: "64MiB"})
	_, in := p.incoming("vm1", false)
	// The copy is known but is no VM of the target's yet.
	st := p.dst.state("vm1")
	if st.Power != hypervisor.StateOff || st.Reason == "" {
		t.Errorf("target state while receiving: %+v, want off with a reason", st)
	}
	ctx := t.Context()
	for name, op := range map[string]func() error{
		"start":    func() error { return p.dst.d.Start(ctx, "vm1") },
		"undefine": func() error { return p.dst.d.Undefine(ctx, "vm1") },
		"define":   func() error { return p.dst.d.Define(ctx, p.dst.cfgs["vm1"]) },
	} {
		if err := op(); !errors.Is(err, hypervisor.ErrWrongState) {
			t.Errorf("%s while receiving: %v, want ErrWrongState", name, err)
		}
	}
	if st, err := p.dst.d.MigrationStatus(ctx, "vm1"); err != nil || st.State != hypervisor.MigrationNone {
		t.Errorf("target's migration status: %+v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(p.dst.cfgs["vm1"].Dir, sim.StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file while receiving: %v, want none", err)
	}

	must(t, p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}))
	if err := p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("second migration at once: %v, want ErrWrongState", err)
	}
	if err := p.src.d.FinishIncoming(ctx, "vm1"); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("finish receiving on the source: %v, want ErrWrongState", err)
	}
	if st := p.wait("vm1"); st.State != hypervisor.MigrationCompleted {
		t.Fatalf("migration: %+v", st)
	}
	// The source's guest is paused for good, though it reports on.
	if st := p.src.state("vm1"); st.Power != hypervisor.StateOn {
		t.Errorf("source after completion: %+v", st)
	}
	for name, op := range map[string]func() error{
		"suspend":  func() error { return p.src.d.Suspend(ctx, "vm1") },
		"shutdown": func() error { return p.src.d.Shutdown(ctx, "vm1") },
		"migrate":  func() error { return p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}) },
	} {
		if err := op(); !errors.Is(err, hypervisor.ErrWrongState) {
			t.Errorf("%s after migrating: %v, want ErrWrongState", name, err)
		}
	}
	// So it stays across an agent restart.
	if st := p.src.restart()["vm1"]; st.Power != hypervisor.StateOn {
		t.Errorf("source after a restart: %+v", st)
	}
	if err := p.src.d.Shutdown(ctx, "vm1"); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("shutdown after migrating and a restart: %v, want ErrWrongState", err)
	}

	before := time.Now()
	p.finish("vm1")
	st = p.dst.state("vm1")
	if st.Power != hypervisor.StateOn || st.Reason != "" || st.Since.Before(before) {
		t.Errorf("target after finishing: %+v, want on since finishing", st)
	}
	if _, err := p.src.d.State(ctx, "vm1"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("source after release: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(filepath.Join(p.src.cfgs["vm1"].Dir, sim.StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("source state file after release: %v", err)
	}
	delete(p.src.cfgs, "vm1")
	if err := p.dst.d.FinishIncoming(ctx, "vm1"); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("finish receiving twice: %v, want ErrWrongState", err)
	}
	if st := p.dst.restart()["vm1"]; st.Power != hypervisor.StateOn {
		t.Errorf("target after a restart: %+v", st)
	}
	// And the VM is an ordinary one there.
	must(t, p.dst.d.Shutdown(ctx, "vm1"))
	if _, err := waitOffByPolling(t, p.dst.d, "vm1"); err != nil {
		t.Fatal(err)
	}
}

// Cancelling leaves the VM running on the source and the status where it
// stopped; the target throws its copy away.
func TestCancelMigration(t *testing.T) {
	clk := newClock()
	p := newPair(t, clk)
	p.running("vm1", gib, nil)
	dcfg, in := p.incoming("vm1", false)
	ctx := t.Context()
	must(t, p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}))
	clk.Advance(550 * time.Millisecond)
	must(t, p.src.d.CancelMigration(ctx, "vm1"))
	want := p.status("vm1")
	if want.State != hypervisor.MigrationCancelled || want.Pass != 1 || !nearBytes(want.TransferredBytes, 512*mib) ||
		want.TotalTime != 550*time.Millisecond {
		t.Errorf("after cancelling half-way: %+v", want)
	}
	clk.Advance(time.Hour)
	if st := p.status("vm1"); st != want {
		t.Errorf("an hour after cancelling: %+v, want %+v", st, want)
	}
	if err := p.src.d.CancelMigration(ctx, "vm1"); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("cancel twice: %v, want ErrWrongState", err)
	}
	if st := p.src.state("vm1"); st.Power != hypervisor.StateOn {
		t.Errorf("source after cancelling: %+v", st)
	}
	must(t, p.src.d.Suspend(ctx, "vm1")) // an ordinary VM again
	must(t, p.src.d.Resume(ctx, "vm1"))

	must(t, p.dst.d.AbortIncoming(ctx, "vm1"))
	if _, err := p.dst.d.State(ctx, "vm1"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("target after aborting: %v, want ErrNotFound", err)
	}
	if _, err := os.Stat(dcfg.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory Incoming made is still there: %v", err)
	}
	if err := p.dst.d.AbortIncoming(ctx, "vm1"); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("abort twice: %v, want ErrNotFound", err)
	}
	// The source can try again.
	_, in = p.incoming("vm1", false)
	must(t, p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}))
	if st := p.wait("vm1"); st.State != hypervisor.MigrationCompleted {
		t.Fatalf("second attempt: %+v", st)
	}
	// The target is lost at the switch-over: the source takes it back.
	must(t, p.src.d.CancelMigration(ctx, "vm1"))
	if st := p.status("vm1"); st.State != hypervisor.MigrationCancelled {
		t.Errorf("after taking the VM back: %+v", st)
	}
	must(t, p.src.d.Suspend(ctx, "vm1")) // it runs here again
	must(t, p.src.d.Resume(ctx, "vm1"))
	must(t, p.dst.d.AbortIncoming(ctx, "vm1"))
	_, in = p.incoming("vm1", false)
	must(t, p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}))
	if st := p.wait("vm1"); st.State != hypervisor.MigrationCompleted {
		t.Fatalf("third attempt: %+v", st)
	}
	p.finish("vm1")
}

func TestIncomingErrors(t *testing.T) {
	p := newPair(t, nil)
	ctx := t.Context()
	cfg := p.running("vm1", 64*mib, nil)
	opt := hypervisor.IncomingOptions{Address: "127.0.0.1"}
	if _, err := p.src.d.Incoming(ctx, cfg, opt); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("receive a vm the host has: %v, want ErrWrongState", err)
	}
	p.incoming("vm1", false)
	if _, err := p.dst.d.Incoming(ctx, p.dst.cfgs["vm1"], opt); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("receive a vm twice: %v, want ErrWrongState", err)
	}
	// A VM an earlier agent left in that directory is not overwritten.
	other := vmConfig(t, filepath.Join(p.dst.dir, "left"), "left")
	must(t, p.dst.d.Define(ctx, other))
	must(t, p.dst.d.Close())
	p.dst.d = newDriver(t, p.dst.opts)
	if _, err := p.dst.d.Incoming(ctx, other, opt); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("receive into a directory with a state file: %v, want ErrWrongState", err)
	}
	// The restart forgot the copy being received: nothing was saved.
	if _, err := p.dst.d.Attach(ctx, p.dst.cfgs["vm1"]); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Errorf("attach a copy being received before the restart: %v, want ErrNotFound", err)
	}
	for name, op := range map[string]func() error{
		"finish":  func() error { return p.dst.d.FinishIncoming(ctx, "nope") },
		"abort":   func() error { return p.dst.d.AbortIncoming(ctx, "nope") },
		"release": func() error { return p.dst.d.Release(ctx, "nope", false) },
		"cancel":  func() error { return p.dst.d.CancelMigration(ctx, "nope") },
		"migrate": func() error { return p.dst.d.MigrateOut(ctx, "nope", hypervisor.MigrateTarget{URI: "sim://x/nope"}) },
		"move":    func() error { return p.dst.d.MoveDisks(ctx, "nope", nil) },
		"status":  func() error { _, err := p.dst.d.MigrationStatus(ctx, "nope"); return err },
	} {
		if err := op(); !errors.Is(err, hypervisor.ErrNotFound) {
			t.Errorf("%s an unknown vm: %v, want ErrNotFound", name, err)
		}
	}
	if err := p.src.d.AbortIncoming(ctx, "vm1"); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("abort receiving a vm of the host: %v, want ErrWrongState", err)
	}
	if _, err := p.dst.d.Incoming(ctx, p.dst.cfgs["vm1"], hypervisor.IncomingOptions{}); err == nil {
		t.Errorf("receive with no address: no error")
	}
}

func TestMigrateOutErrors(t *testing.T) {
	p := newPair(t, nil)
	ctx := t.Context()
	p.running("vm1", 64*mib, map[string]string{sim.LabelDirtyRate: "lots"})
	p.running("vm2", 64*mib, nil)
	must(t, p.src.d.PowerOff(ctx, "vm2"))
	to := hypervisor.MigrateTarget{URI: "sim://127.0.0.1/vm"}
	if err := p.src.d.MigrateOut(ctx, "vm2", to); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("migrate a vm that is off: %v, want ErrWrongState", err)
	}
	if err := p.src.d.MigrateOut(ctx, "vm1", to); err == nil || !strings.Contains(err.Error(), sim.LabelDirtyRate) {
		t.Errorf("migrate with a bad dirty rate label: %v", err)
	}
	must(t, p.src.d.Define(ctx, p.src.cfgs["vm2"]))
	must(t, p.src.d.Start(ctx, "vm2"))
	if err := p.src.d.MigrateOut(ctx, "vm2", hypervisor.MigrateTarget{URI: "tcp:127.0.0.1:4444"}); err == nil {
		t.Errorf("migrate to a QEMU: no error")
	}
	if err := p.src.d.MigrateOut(ctx, "vm2", hypervisor.MigrateTarget{URI: to.URI, Compress: "lz4"}); err == nil {
		t.Errorf("migrate with unknown compression: no error")
	}
	if st := p.status("vm2"); st.State != hypervisor.MigrationNone {
		t.Errorf("status after refused migrations: %+v", st)
	}
}

// A guest that shuts down while it is being sent ends the migration.
func TestShutdownDuringMigration(t *testing.T) {
	p := newPair(t, nil)
	ctx := t.Context()
	p.running("vm1", 64*gib, nil) // a minute to send
	_, in := p.incoming("vm1", false)
	must(t, p.src.d.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI}))
	must(t, p.src.d.Shutdown(ctx, "vm1"))
	if _, err := waitOffByPolling(t, p.src.d, "vm1"); err != nil {
		t.Fatal(err)
	}
	if st := p.status("vm1"); st.State != hypervisor.MigrationFailed || !strings.Contains(st.Error, "turned off") {
		t.Errorf("migration of a guest that shut down: %+v", st)
	}
	must(t, p.dst.d.AbortIncoming(ctx, "vm1"))
}

func TestMoveDisks(t *testing.T) {
	clk := newClock()
	h := newHost(t, sim.Options{Now: clk.Now})
	ctx := t.Context()
	cfg := vmConfig(t, filepath.Join(h.dir, "vm1"), "vm1")
	cfg.Disks = []hypervisor.DiskConfig{
		{Name: "root", Path: "/ds1/vm1/root.qcow2", SizeBytes: 30 * gib},
		{Name: "data", Path: "/ds1/vm1/data.qcow2", SizeBytes: 10 * gib},
	}
	cfg.Labels = map[string]string{sim.LabelDiskUsed: "400MiB"}
	must(t, h.d.Define(ctx, cfg))
	if err := h.d.MoveDisks(ctx, "vm1", []hypervisor.DiskMove{{Name: "data", Path: "/ds2/vm1/data.qcow2"}}); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("move the disks of a vm that is off: %v, want ErrWrongState", err)
	}
	must(t, h.d.Start(ctx, "vm1"))
	must(t, h.d.Suspend(ctx, "vm1"))
	for name, moves := range map[string][]hypervisor.DiskMove{
		"unknown disk":  {{Name: "swap", Path: "/ds2/swap"}},
		"twice":         {{Name: "data", Path: "/ds2/a"}, {Name: "data", Path: "/ds2/b"}},
		"relative path": {{Name: "data", Path: "data.qcow2"}},
	} {
		if err := h.d.MoveDisks(ctx, "vm1", moves); err == nil {
			t.Errorf("move with %s: no error", name)
		}
	}

	// The data disk holds a quarter of the data: 100MiB, at 1GiB/s.
	took := seconds(100.0 * mib / gib)
	must(t, h.d.MoveDisks(ctx, "vm1", []hypervisor.DiskMove{{Name: "data", Path: "/ds2/vm1/data.qcow2"}}))
	clk.Advance(took / 2)
	st, err := h.d.MigrationStatus(ctx, "vm1")
	must(t, err)
	if st.State != hypervisor.MigrationMirroring || st.DiskTotal != 100*mib || !nearBytes(st.DiskDone, 50*mib) {
		t.Errorf("half-way: %+v", st)
	}
	if got := savedDiskPaths(t, cfg.Dir); got["data"] != "/ds1/vm1/data.qcow2" {
		t.Errorf("saved path of the data disk half-way: %q", got["data"])
	}
	clk.Advance(time.Second)
	st, err = h.d.MigrationStatus(ctx, "vm1")
	must(t, err)
	if st.State != hypervisor.MigrationCompleted || st.DiskDone != 100*mib || !near(st.TotalTime, took) {
		t.Errorf("done: %+v", st)
	}
	got := savedDiskPaths(t, cfg.Dir)
	if got["data"] != "/ds2/vm1/data.qcow2" || got["root"] != "/ds1/vm1/root.qcow2" {
		t.Errorf("saved paths after the move: %v", got)
	}
	if cfg.Disks[1].Path != "/ds1/vm1/data.qcow2" {
		t.Errorf("the move changed the caller's config: %+v", cfg.Disks[1])
	}
	if st := h.state("vm1"); st.Power != hypervisor.StateSuspended {
		t.Errorf("vm after moving its disks: %+v", st)
	}

	// A cancelled move leaves the disks where they were.
	must(t, h.d.MoveDisks(ctx, "vm1", []hypervisor.DiskMove{{Name: "root", Path: "/ds2/vm1/root.qcow2"}}))
	clk.Advance(10 * time.Millisecond)
	must(t, h.d.CancelMigration(ctx, "vm1"))
	clk.Advance(time.Second)
	if st, _ := h.d.MigrationStatus(ctx, "vm1"); st.State != hypervisor.MigrationCancelled {
		t.Errorf("cancelled move: %+v", st)
	}
	if got := savedDiskPaths(t, cfg.Dir); got["root"] != "/ds1/vm1/root.qcow2" {
		t.Errorf("root disk after a cancelled move: %q", got["root"])
	}
}

// savedDiskPaths reads the disk paths sim saved for a VM.
func savedDiskPaths(t *testing.T, dir string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, sim.StateFile))
	must(t, err)
	var rec struct {
		Config hypervisor.VMConfig `json:"config"`
	}
	must(t, json.Unmarshal(b, &rec))
	out := map[string]string{}
	for _, dc := range rec.Config.Disks {
		out[dc.Name] = dc.Path
	}
	return out
}

// Many migrations at once, watched from many goroutines (for -race).
func TestConcurrentMigrations(t *testing.T) {
	p := newPair(t, nil)
	ctx := t.Context()
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	var wg sync.WaitGroup
	for _, id := range ids {
		p.running(id, 16*mib, map[string]string{sim.LabelDirtyRate: "32MiB"})
		_, in := p.incoming(id, false)
		must(t, p.src.d.MigrateOut(ctx, id, hypervisor.MigrateTarget{URI: in.URI, MaxBandwidth: 256 * mib}))
	}
	errs := make(chan error, len(ids))
	for _, id := range ids {
		wg.Go(func() {
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				st, err := p.src.d.MigrationStatus(ctx, id)
				if err != nil {
					errs <- err
					return
				}
				if st.State == hypervisor.MigrationCompleted {
					if err := p.dst.d.FinishIncoming(ctx, id); err != nil {
						errs <- err
					} else if err := p.src.d.Release(ctx, id, false); err != nil {
						errs <- err
					}
					return
				}
				time.Sleep(time.Millisecond)
			}
			errs <- errors.New("vm " + id + " did not move in 10s")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		if st := p.dst.state(id); st.Power != hypervisor.StateOn {
			t.Errorf("vm %s on the target: %+v", id, st)
		}
	}
}

// Close stops migrations under way without waiting for them.
func TestCloseDuringMigration(t *testing.T) {
	before := runtime.NumGoroutine()
	src, dst := sim.New(sim.Options{}), sim.New(sim.Options{})
	ctx := t.Context()
	cfg := vmConfig(t, filepath.Join(t.TempDir(), "vm1"), "vm1")
	cfg.MemoryBytes = 1 << 40 // a quarter of an hour to send
	must(t, src.Define(ctx, cfg))
	must(t, src.Start(ctx, "vm1"))
	dcfg := cfg
	dcfg.Dir = filepath.Join(t.TempDir(), "vm1")
	in, err := dst.Incoming(ctx, dcfg, hypervisor.IncomingOptions{Address: "127.0.0.1", Disks: true})
	must(t, err)
	must(t, src.MigrateOut(ctx, "vm1", hypervisor.MigrateTarget{URI: in.URI, NBD: in.NBD}))
	if err := src.MoveDisks(ctx, "vm1", nil); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Errorf("move disks while migrating: %v, want ErrWrongState", err)
	}
	done := make(chan struct{})
	go func() {
		src.Close()
		dst.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close still waiting after 5s with a migration under way")
	}
	if _, err := src.MigrationStatus(ctx, "vm1"); !errors.Is(err, sim.ErrClosed) {
		t.Errorf("status after Close: %v, want ErrClosed", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines after Close, %d before", n, before)
	}
	// The source VM was left running, as when its agent dies.
	st, err := sim.New(sim.Options{}).Attach(ctx, cfg)
	must(t, err)
	if st.Power != hypervisor.StateOn {
		t.Errorf("source vm after Close: %+v", st)
	}
}
