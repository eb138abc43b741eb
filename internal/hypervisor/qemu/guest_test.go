package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Right after boot an exec either runs or fails saying the guest agent
// has not answered yet (ErrGuestAgent: not a power state, and never
// "not-installed" while the guest boots); once one exec ran, the next ones
// run too: none depends on a poll older than the agent's first answer.
func TestGuestExecRightAfterBoot(t *testing.T) {
	g := testGuest(t)
	dir := t.TempDir()
	// A poll that lags the agent as much as it can: one at the start,
	// which the agent cannot answer yet, and none for an hour. (The
	// reported flap lasted until the next poll.)
	d, err := New(context.Background(), Options{RunDir: filepath.Join(dir, "run"), Accel: testAccel(), GuestPoll: time.Hour, Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	cfg := testConfig(g, filepath.Join(dir, "vm"), "exec1")
	ctx := context.Background()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.Define(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.PowerOff(context.Background(), cfg.ID) })
	exec := func() error {
		ectx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		res, err := d.GuestExec(ectx, cfg.ID, hypervisor.ExecRequest{Path: "/bin/true"})
		if err == nil && res.ExitCode != 0 {
			t.Fatalf("/bin/true exited %d", res.ExitCode)
		}
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for tries := 1; ; tries++ {
		err := exec()
		if err == nil {
			t.Logf("the first exec ran at try %d", tries)
			break
		}
		if !errors.Is(err, hypervisor.ErrGuestAgent) || errors.Is(err, hypervisor.ErrWrongState) || !strings.Contains(err.Error(), "not-running") {
			t.Fatalf("exec while the guest boots: want ErrGuestAgent saying not-running, got %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest agent never answered: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the polling interval; each try already waits for an answer
	}
	for i := 2; i <= 6; i++ {
		if err := exec(); err != nil {
			t.Fatalf("exec %d, after one ran: %v", i, err)
		}
	}
	if gi, _ := d.Guest(ctx, cfg.ID); gi.State != hypervisor.GuestRunning {
		t.Errorf("guest agent state after it answered: %q", gi.State)
	}
}

// A VM whose guest has no agent (here: no OS at all) shows not-running
// while its agent could still start, and not-installed only after that.
func TestGuestAgentNotInstalledOnlyAfterGrace(t *testing.T) {
	needQEMU(t)
	// Not t.TempDir: once, under load, something still wrote into the VM's
	// folder as the test's cleanup removed it ("directory not empty").
	dir, err := os.MkdirTemp("", "vdc-qemu-grace-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; i < 5 && os.RemoveAll(dir) != nil; i++ {
			time.Sleep(200 * time.Millisecond)
		}
	})
	const grace = 8 * time.Second
	d, err := New(context.Background(), Options{RunDir: filepath.Join(dir, "run"), Accel: testAccel(), GuestPoll: 200 * time.Millisecond,
		GuestAgentGrace: grace, Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	cfg := hypervisor.VMConfig{ID: "noagent", Name: "t-noagent", CPUs: 1, MemoryBytes: 64 << 20, Dir: filepath.Join(dir, "vm")}
	ctx := context.Background()
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := d.Define(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if err := d.Start(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.PowerOff(context.Background(), cfg.ID) })
	state := func() string {
		gi, err := d.Guest(ctx, cfg.ID)
		if err != nil {
			t.Fatal(err)
		}
		return gi.State
	}
	var seen []string
	for time.Since(started) < grace-time.Second {
		if s := state(); s != "" && (len(seen) == 0 || seen[len(seen)-1] != s) {
			seen = append(seen, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(seen) != 1 || seen[0] != hypervisor.GuestNotRunning {
		t.Fatalf("guest agent states within %s of the start: %v, want only %s", grace, seen, hypervisor.GuestNotRunning)
	}
	_, err = d.GuestExec(ctx, cfg.ID, hypervisor.ExecRequest{Path: "/bin/true"})
	if !errors.Is(err, hypervisor.ErrGuestAgent) || errors.Is(err, hypervisor.ErrWrongState) {
		t.Fatalf("exec with no guest agent: want ErrGuestAgent, got %v", err)
	}
	for state() != hypervisor.GuestNotInstalled {
		if time.Since(started) > time.Minute {
			t.Fatalf("still %s a minute after the start", state())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if since := time.Since(started); since < grace {
		t.Fatalf("not-installed %s after the start, before the %s grace", since, grace)
	}
	_, err = d.GuestExec(ctx, cfg.ID, hypervisor.ExecRequest{Path: "/bin/true"})
	if !errors.Is(err, hypervisor.ErrGuestAgent) || !strings.Contains(err.Error(), "not-installed") || !strings.Contains(err.Error(), "qemu-guest-agent installed") {
		t.Fatalf("exec after the grace: %v", err)
	}
}
