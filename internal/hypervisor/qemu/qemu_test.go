package qemu

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/hypervisortest"
	"github.com/vdc-project/vdc/internal/testenv"
	"github.com/vdc-project/vdc/internal/testguest"
)

var (
	guestOnce sync.Once
	guest     testguest.Result
	guestErr  error
	accelOnce sync.Once
	accel     string
)

// testGuest builds the test guest once per test binary (the kernel
// package is cached between runs).
func testGuest(t testing.TB) testguest.Result {
	t.Helper()
	needQEMU(t)
	guestOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vdc-qemu-test-guest")
		if err != nil {
			guestErr = err
			return
		}
		guest, guestErr = testguest.Build(context.Background(), testguest.Options{OutDir: dir,
			CacheDir: filepath.Join(os.TempDir(), "vdc-testguest-cache")})
	})
	if guestErr != nil {
		if errors.Is(guestErr, testguest.ErrUnavailable) {
			testenv.Skip(t, "%v", guestErr)
		}
		t.Fatal(guestErr)
	}
	return guest
}

// testAccel probes KVM once per test binary.
func testAccel() string {
	accelOnce.Do(func() {
		accel = "tcg"
		if ProbeKVM(context.Background(), "qemu-system-x86_64") == nil {
			accel = "kvm"
		}
	})
	return accel
}

func testLogger() *slog.Logger {
	if os.Getenv("VDC_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestDriver(t *testing.T, dir string) *Driver {
	t.Helper()
	run := filepath.Join(dir, "run")
	d, err := New(context.Background(), Options{RunDir: run, Accel: testAccel(), GuestPoll: time.Second, Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testConfig(g testguest.Result, dir, id string) hypervisor.VMConfig {
	return hypervisor.VMConfig{ID: id, Name: "t-" + id, CPUs: 1, MemoryBytes: 128 << 20, Dir: dir,
		Boot: &hypervisor.BootConfig{Kernel: g.Kernel, Initrd: g.Initrd, Cmdline: g.Cmdline}}
}

// The qemu driver passes the same conformance suite as sim, with real
// QEMU processes and the real test guest.
func TestConformance(t *testing.T) {
	g := testGuest(t)
	hypervisortest.Run(t, hypervisortest.Harness{
		New:     func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) },
		Config:  func(t *testing.T, dir, id string) hypervisor.VMConfig { return testConfig(g, dir, id) },
		Timeout: 2 * time.Minute,
	})
}

// Snapshots, reverts, merges, copies and disks on real QEMU, with the
// same suite as sim.
func TestStorageConformance(t *testing.T) {
	g := testGuest(t)
	hypervisortest.RunStorage(t, hypervisortest.Harness{
		New:     func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) },
		Config:  func(t *testing.T, dir, id string) hypervisor.VMConfig { return testConfig(g, dir, id) },
		Timeout: 2 * time.Minute,
	})
}

// NICs added, changed and removed on real QEMU, with the same suite as
// sim.
func TestNICConformance(t *testing.T) {
	g := testGuest(t)
	hypervisortest.RunNICs(t, hypervisortest.Harness{
		New:     func(t *testing.T, dir string) hypervisor.Driver { return newTestDriver(t, dir) },
		Config:  func(t *testing.T, dir, id string) hypervisor.VMConfig { return testConfig(g, dir, id) },
		Timeout: 2 * time.Minute,
	})
}
