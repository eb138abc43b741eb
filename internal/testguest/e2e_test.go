package testguest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/testenv"
)

// Under TCG on a loaded two-core machine a boot takes seconds, and several
// VMs run at once here: deadlines are generous and only bound the wait.
const (
	bootTimeout     = 3 * time.Minute
	poweroffTimeout = 30 * time.Second
)

var (
	buildOnce sync.Once
	built     Result
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// guest builds the test guest once per test binary, with a cache under the
// system temp dir so that reruns do not download the kernel again.
func guest(t *testing.T) Result {
	t.Helper()
	if testing.Short() {
		testenv.Skip(t, "boots QEMU under TCG: skipped in -short mode")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testenv.Skip(t, "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "vdc-testguest-out-")
		if buildErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		built, buildErr = Build(ctx, Options{
			OutDir:   buildDir,
			CacheDir: filepath.Join(os.TempDir(), "vdc-testguest-cache"),
			Log:      slog.New(slog.NewTextHandler(testLogWriter{}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})
	})
	if errors.Is(buildErr, ErrUnavailable) {
		testenv.Skip(t, "cannot build the test guest here: %v", buildErr)
	}
	if buildErr != nil {
		t.Fatalf("build test guest: %v", buildErr)
	}
	return built
}

// testLogWriter sends the build log to stderr, where go test -v shows it.
type testLogWriter struct{}

func (testLogWriter) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

func TestGuestBootsAndAnswersAgent(t *testing.T) {
	g := guest(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	vm := startVM(t, g, "vdc-e2e-agent", "")

	// Measured from QEMU's start; under TCG, and with the other tests'
	// VMs sharing the CPUs, so these are logged, never asserted.
	qga, err := dialQGA(ctx, vm.qgaSock)
	if err != nil {
		t.Fatal(err)
	}
	defer qga.Close()
	firstAnswer := time.Since(vm.started)
	ready, err := vm.waitConsole(ctx, "vdc-test-guest: ready")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("boot under TCG: console ready after %v, first guest-agent answer after %v",
		ready.Round(time.Millisecond), firstAnswer.Round(time.Millisecond))

	if err := qga.call(ctx, "guest-ping", nil, nil); err != nil {
		t.Fatal(err)
	}
	var host struct {
		HostName string `json:"host-name"`
	}
	if err := qga.call(ctx, "guest-get-host-name", nil, &host); err != nil {
		t.Fatal(err)
	}
	if host.HostName != "vdc-e2e-agent" {
		t.Errorf("guest-get-host-name = %q, want vdc-e2e-agent (from vdc.hostname=)", host.HostName)
	}

	code, out, err := qga.exec(ctx, "/bin/sh", "-c", "echo hello")
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || out != "hello\n" {
		t.Errorf("guest-exec /bin/sh -c 'echo hello' = exit %d, %q; want 0, \"hello\\n\"", code, out)
	}
	for _, bin := range []string{"/bin/echo", "/bin/cat", "/sbin/poweroff", "/usr/bin/awk"} {
		if code, _, err := qga.exec(ctx, "/bin/sh", "-c", "test -x "+bin); err != nil || code != 0 {
			t.Errorf("%s is not executable in the guest (exit %d, %v)", bin, code, err)
		}
	}

	// DHCP runs in the background; user networking hands out 10.0.2.15.
	var addrs []string
	for {
		addrs, err = ipv4Addresses(ctx, qga, "eth0")
		if err != nil {
			t.Fatal(err)
		}
		if len(addrs) > 0 || ctx.Err() != nil {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if len(addrs) != 1 || addrs[0] != "10.0.2.15" {
		t.Fatalf("eth0 IPv4 addresses = %v, want [10.0.2.15]", addrs)
	}
	if code, out, err := qga.exec(ctx, "/bin/sh", "-c", "ip route show default; cat /etc/resolv.conf"); err != nil || code != 0 ||
		!strings.Contains(out, "default via 10.0.2.2") || !strings.Contains(out, "nameserver 10.0.2.3") {
		t.Errorf("route and resolv.conf after DHCP = %q (exit %d, %v)", out, code, err)
	}

	// qemu-ga is supervised: killed, it comes back on the same channel.
	_, before, err := qga.exec(ctx, "/bin/pidof", "qemu-ga")
	if err != nil {
		t.Fatal(err)
	}
	var started struct{ Pid int }
	if err := qga.call(ctx, "guest-exec", map[string]any{"path": "/bin/sh", "arg": []string{"-c", "sleep 0.2; kill -9 $(pidof qemu-ga)"}}, &started); err != nil {
		t.Fatal(err)
	}
	for {
		// A request can die with the old agent: bound each attempt.
		try, cancelTry := context.WithTimeout(ctx, 5*time.Second)
		err := qga.resync(try)
		after := ""
		if err == nil {
			_, after, err = qga.exec(try, "/bin/pidof", "qemu-ga")
		}
		cancelTry()
		if err == nil && after != "" && after != before {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("agent not back after kill -9 of qemu-ga %s: %v", strings.TrimSpace(before), err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Contains(vm.console(), "insmod") {
		t.Errorf("a module failed to load:\n%s", vm.console())
	}

	// guest-shutdown: qemu-ga runs /sbin/shutdown -h -P +0 "...", and a
	// successful shutdown sends no answer.
	shutdown := time.Now()
	if err := qga.send("guest-shutdown"); err != nil {
		t.Fatal(err)
	}
	exitCtx, cancelExit := context.WithTimeout(context.Background(), poweroffTimeout)
	defer cancelExit()
	if _, err := vm.waitExit(exitCtx); err != nil {
		t.Fatalf("after guest-shutdown: %v", err)
	}
	t.Logf("powered off %v after guest-shutdown", time.Since(shutdown).Round(time.Millisecond))
	if !strings.Contains(vm.console(), "reboot: Power down") {
		t.Error("the console does not show the kernel powering down")
	}
}

func ipv4Addresses(ctx context.Context, qga *qgaConn, ifname string) ([]string, error) {
	var ifaces []struct {
		Name        string
		IPAddresses []struct {
			Type    string `json:"ip-address-type"`
			Address string `json:"ip-address"`
		} `json:"ip-addresses"`
	}
	if err := qga.call(ctx, "guest-network-get-interfaces", nil, &ifaces); err != nil {
		return nil, err
	}
	var addrs []string
	for _, i := range ifaces {
		if i.Name != ifname {
			continue
		}
		for _, a := range i.IPAddresses {
			if a.Type == "ipv4" {
				addrs = append(addrs, a.Address)
			}
		}
	}
	return addrs, nil
}

// powerdown presses the ACPI power button through QMP.
func powerdown(ctx context.Context, vm *testVM) error {
	q, err := dialQMP(ctx, vm.qmpSock)
	if err != nil {
		return err
	}
	defer q.Close()
	return q.execute(ctx, "system_powerdown")
}

// TestPowerButtonAfterBoot also boots the compressed kernel (the fallback
// when no PVH kernel can be extracted, and what UEFI boots need).
func TestPowerButtonAfterBoot(t *testing.T) {
	g := guest(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	g.Kernel = g.BzImage
	vm := startVM(t, g, "vdc-e2e-button", "")
	if _, err := vm.waitConsole(ctx, "vdc-test-guest: ready"); err != nil {
		t.Fatal(err)
	}

	// acpid is supervised too: the press below goes to a restarted one.
	qga, err := dialQGA(ctx, vm.qgaSock)
	if err != nil {
		t.Fatal(err)
	}
	defer qga.Close()
	_, before, err := qga.exec(ctx, "/bin/pidof", "acpid")
	if err != nil || before == "" {
		t.Fatalf("acpid not running: %q, %v", before, err)
	}
	if code, _, err := qga.exec(ctx, "/bin/sh", "-c", "kill $(pidof acpid)"); err != nil || code != 0 {
		t.Fatalf("kill acpid: exit %d, %v", code, err)
	}
	for {
		// Restarted means running with its devices open (pid file written).
		_, after, err := qga.exec(ctx, "/bin/sh", "-c", "test -s /run/acpid.pid && pidof acpid")
		if err != nil {
			t.Fatal(err)
		}
		if after != "" && after != before {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("acpid was not restarted: %v", ctx.Err())
		}
		time.Sleep(200 * time.Millisecond)
	}

	pressed := time.Now()
	if err := powerdown(ctx, vm); err != nil {
		t.Fatal(err)
	}
	exitCtx, cancelExit := context.WithTimeout(context.Background(), poweroffTimeout)
	defer cancelExit()
	if _, err := vm.waitExit(exitCtx); err != nil {
		t.Fatalf("after system_powerdown: %v", err)
	}
	t.Logf("powered off %v after the press", time.Since(pressed).Round(time.Millisecond))
	if !strings.Contains(vm.console(), "vdc-test-guest: power button: powering off") {
		t.Error("the console does not show acpid's power-off action")
	}
}

// TestPowerButtonBeforeAcpid presses the button after button.ko has armed
// it but while acpid is held back (a test hook on the kernel command line):
// the press must still power the guest off, with this one press.
func TestPowerButtonBeforeAcpid(t *testing.T) {
	g := guest(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	vm := startVM(t, g, "vdc-e2e-early", "vdc.test_acpid_delay=8")
	if _, err := vm.waitConsole(ctx, "vdc-test-guest: acpi power button enabled"); err != nil {
		t.Fatal(err)
	}
	if err := powerdown(ctx, vm); err != nil {
		t.Fatal(err)
	}
	exitCtx, cancelExit := context.WithTimeout(context.Background(), 8*time.Second+2*poweroffTimeout)
	defer cancelExit()
	if _, err := vm.waitExit(exitCtx); err != nil {
		t.Fatalf("after one system_powerdown during boot: %v", err)
	}
	if !strings.Contains(vm.console(), "power button pressed before acpid listened") {
		t.Error("the press was not caught by the pending-press check")
	}
}

// TestPowerButtonRightAfterStart presses the button as soon as QMP answers,
// while the guest is still in the firmware or the kernel. QEMU drops a press
// that comes before the guest has enabled the ACPI power-button event (real
// hardware latches it; QEMU's PM1 emulation does not), so, like a real
// driver, the test presses again every few seconds until QEMU exits.
func TestPowerButtonRightAfterStart(t *testing.T) {
	g := guest(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	vm := startVM(t, g, "vdc-e2e-start", "")
	q, err := dialQMP(ctx, vm.qmpSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	presses := 0
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for !vm.hasExited() {
		if err := q.execute(ctx, "system_powerdown"); err != nil {
			if vm.hasExited() {
				break
			}
			t.Fatal(err)
		}
		presses++
		select {
		case <-vm.exited:
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("qemu still running after %d presses: %v", presses, ctx.Err())
		}
	}
	if _, err := vm.waitExit(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("powered off %v after start, after %d press(es)", time.Since(vm.started).Round(time.Millisecond), presses)
	if !strings.Contains(vm.console(), "vdc-test-guest: power button: powering off") {
		t.Error("the console does not show the guest handling the power button")
	}
}
