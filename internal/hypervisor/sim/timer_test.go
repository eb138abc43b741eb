package sim

import (
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// A shutdown timer that fired just as PowerOff took the lock must not turn
// off the VM the caller started again afterwards. The race is too narrow to
// hit from outside, so the test plays the late callback itself.
func TestStaleShutdownTimer(t *testing.T) {
	d := New(Options{ShutdownDelay: time.Hour})
	defer d.Close()
	ctx := t.Context()
	cfg := hypervisor.VMConfig{ID: "vm1", CPUs: 1, MemoryBytes: 1 << 30, Dir: t.TempDir()}
	if err := d.Define(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, op := range []func() error{
		func() error { return d.Start(ctx, "vm1") },
		func() error { return d.Shutdown(ctx, "vm1") },
	} {
		if err := op(); err != nil {
			t.Fatal(err)
		}
	}
	d.mu.Lock()
	v := d.vms["vm1"]
	gen, armed := v.gen, v.timer != nil
	d.mu.Unlock()
	if !armed {
		t.Fatal("no shutdown timer after Shutdown")
	}

	if err := d.PowerOff(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	if v.timer != nil {
		t.Errorf("shutdown timer still set after PowerOff")
	}
	d.mu.Unlock()
	if err := d.Start(ctx, "vm1"); err != nil {
		t.Fatal(err)
	}
	d.shutdownDone(v, gen)
	st, err := d.State(ctx, "vm1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Power != hypervisor.StateOn {
		t.Fatalf("stale shutdown timer turned the vm %s", st.Power)
	}
}
