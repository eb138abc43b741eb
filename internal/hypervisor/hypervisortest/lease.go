package hypervisortest

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/lease"
)

// Two hosts, one VM: the copy that runs holds the lease, and the other
// host cannot start its copy until the first one is off, even after the
// first host's agent restarts.
func testLease(t *testing.T, h Harness) {
	a, b := newEnv(t, h), newEnv(t, h)
	if _, ok := a.d.(hypervisor.Leaser); !ok {
		t.Fatal("the driver does not hold leases (hypervisor.Leaser)")
	}
	path := lease.Path(filepath.Join(t.TempDir(), "datastore"), "vm1")
	onA := a.config("vm1")
	onA.Lease = path
	a.ok(a.d.Define(a.ctx(), onA), "define on host a")
	// The same VM as host b knows it (its own ID only so that both can run
	// side by side on this one machine).
	onB := b.config("vm1-b")
	onB.Lease = path
	b.ok(b.d.Define(b.ctx(), onB), "define on host b")

	a.ok(a.d.Start(a.ctx(), "vm1"), "start on host a")
	if got := a.d.(hypervisor.Leaser).Lease("vm1"); got != path {
		t.Fatalf("running vm holds lease %q, want %q", got, path)
	}
	startB := func(what string) error {
		t.Helper()
		err := b.d.Start(b.ctx(), "vm1-b")
		if err == nil {
			b.wait("vm1-b", hypervisor.StateOn)
		}
		return err
	}
	if err := startB("while a runs it"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("start on host b while host a runs the vm: want lease.ErrHeld, got %v", err)
	}
	b.expect("vm1-b", hypervisor.StateOff)

	a.restart()
	if _, err := a.d.Attach(a.ctx(), onA); err != nil {
		t.Fatalf("attach after restart: %v", err)
	}
	a.expect("vm1", hypervisor.StateOn)
	if err := startB("after a's agent restarted"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("start on host b after host a's agent restarted: want lease.ErrHeld, got %v", err)
	}

	a.ok(a.d.PowerOff(a.ctx(), "vm1"), "power off on host a")
	a.wait("vm1", hypervisor.StateOff)
	if got := a.d.(hypervisor.Leaser).Lease("vm1"); got != "" {
		t.Fatalf("a vm that is off holds lease %q", got)
	}
	if err := startB("once a powered it off"); err != nil {
		t.Fatalf("start on host b once host a powered the vm off: %v", err)
	}
	if err := a.d.Start(a.ctx(), "vm1"); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("start on host a while host b runs the vm: want lease.ErrHeld, got %v", err)
	}
	a.expect("vm1", hypervisor.StateOff)
}
