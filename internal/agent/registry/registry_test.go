package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
)

func newTestRegistry(t *testing.T, dir string) *Registry {
	drv := sim.New(sim.Options{ShutdownDelay: 10 * time.Millisecond})
	t.Cleanup(func() { _ = drv.Close() })
	r := New(dir, drv, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	if err := r.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return r
}

func cfg(id string) hypervisor.VMConfig {
	return hypervisor.VMConfig{ID: id, Name: "vm-" + id, CPUs: 1, MemoryBytes: 64 << 20}
}

func TestRegistryKeepsVMsAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r := newTestRegistry(t, dir)
	for _, id := range []string{"a", "b"} {
		if _, err := r.Define(ctx, cfg(id)); err != nil {
			t.Fatal(err)
		}
	}
	st, err := r.Power(ctx, "a", api.PowerRequest{Action: api.ActionStart})
	if err != nil || st.PowerState != api.PowerOn {
		t.Fatalf("start: %+v %v", st, err)
	}
	_, seqBefore := r.States(ctx, false)
	// A new agent process on the same data dir finds both VMs as they were.
	r2 := newTestRegistry(t, dir)
	states, seq := r2.States(ctx, false)
	got := map[string]string{}
	for _, s := range states {
		got[s.ID] = s.PowerState
	}
	if got["a"] != api.PowerOn || got["b"] != api.PowerOff || len(got) != 2 {
		t.Fatalf("after restart: %v", got)
	}
	if seq <= seqBefore {
		t.Fatalf("state sequence went back across a restart: %d <= %d", seq, seqBefore)
	}
}

func TestRegistryDeleteNeedsForceWhenRunning(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	r := newTestRegistry(t, dir)
	if _, err := r.Define(ctx, cfg("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Power(ctx, "a", api.PowerRequest{Action: api.ActionStart}); err != nil {
		t.Fatal(err)
	}
	if err := r.Undefine(ctx, "a", false); !errors.Is(err, hypervisor.ErrWrongState) {
		t.Fatalf("delete running VM without force: %v", err)
	}
	if err := r.Undefine(ctx, "a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); !os.IsNotExist(err) {
		t.Fatalf("VM files left behind: %v", err)
	}
	if err := r.Undefine(ctx, "a", true); !errors.Is(err, hypervisor.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func TestGracefulStopFallsBackToPowerOff(t *testing.T) {
	ctx := context.Background()
	r := newTestRegistry(t, t.TempDir())
	c := cfg("a")
	c.Labels = map[string]string{sim.LabelIgnoreACPI: "true"}
	if _, err := r.Define(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Power(ctx, "a", api.PowerRequest{Action: api.ActionStart}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st, err := r.Power(ctx, "a", api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: 1})
	if err != nil || st.PowerState != api.PowerOff {
		t.Fatalf("stop: %+v %v", st, err)
	}
	if time.Since(start) < time.Second {
		t.Fatal("powered off before the graceful timeout")
	}
	// A cooperative guest goes off by itself, well before the timeout.
	if _, err := r.Define(ctx, cfg("b")); err != nil {
		t.Fatal(err)
	}
	r.Power(ctx, "b", api.PowerRequest{Action: api.ActionStart})
	start = time.Now()
	if st, err := r.Power(ctx, "b", api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: 30}); err != nil || st.PowerState != api.PowerOff {
		t.Fatalf("stop b: %+v %v", st, err)
	}
	if time.Since(start) > 20*time.Second {
		t.Fatal("graceful stop of a cooperative guest waited for the timeout")
	}
}

// onDriver reports every VM on, as QEMU does for a copy it receives
// while the source still runs it.
type onDriver struct{ *sim.Driver }

func (d onDriver) State(ctx context.Context, id string) (hypervisor.VMState, error) {
	st, err := d.Driver.State(ctx, id)
	st.Power, st.Reason = hypervisor.StateOn, ""
	return st, err
}

// A heartbeat listed while a VM was still being received (so without it)
// must not look, once the VM is received, like a list made after it
// arrived: the server would mark it unknown on its new host.
func TestReceivedVMIsNewerThanListsMadeWithoutIt(t *testing.T) {
	ctx := context.Background()
	drv := onDriver{sim.New(sim.Options{})}
	t.Cleanup(func() { _ = drv.Close() })
	r := New(t.TempDir(), drv, slog.New(slog.NewTextHandler(io.Discard, nil)), func() {})
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Incoming(ctx, drv, cfg("a"), hypervisor.IncomingOptions{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	e, err := r.Get("a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Observe(ctx, "a", e); err != nil { // the migration task asks how it goes
		t.Fatal(err)
	}
	listed, watermark := r.States(ctx, false)
	if len(listed) != 0 {
		t.Fatalf("a VM being received is listed: %+v", listed)
	}
	st, err := r.FinishIncoming(ctx, drv, "a")
	if err != nil {
		t.Fatal(err)
	}
	if st.Seq <= watermark {
		t.Fatalf("the received VM's state seq %d is not newer than a list made without it (%d)", st.Seq, watermark)
	}
}
