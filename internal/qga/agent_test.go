package qga

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/testenv"
)

// These tests run the real qemu-ga on the host, listening on a unix socket
// instead of a virtio-serial port: the protocol is the same, no VM needed.
// Its commands act on the HOST, as the user running the tests (often
// root), so every command but the harmless ones is disabled and checked
// to be before a test starts.

// allowed is all a test may run against the host's agent.
var allowed = []string{
	"guest-sync-delimited", "guest-sync", "guest-ping", "guest-info",
	"guest-get-osinfo", "guest-get-host-name", "guest-network-get-interfaces",
	"guest-exec", "guest-exec-status",
}

// requireTool returns the path of a program the test needs, or skips the
// test when it is not installed, except under VDC_REQUIRE_E2E=1 (CI), where
// a missing tool is a failure.
func requireTool(t *testing.T, name string, fallbacks ...string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, f := range fallbacks { // sbin is often not in PATH
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	testenv.Skip(t, "%s is not installed: %v", name, err)
	return ""
}

// startAgent runs qemu-ga with only the allowed commands and returns its
// socket. The process is killed when the test ends.
func startAgent(t *testing.T) string {
	t.Helper()
	bin := requireTool(t, "qemu-ga", "/usr/sbin/qemu-ga")
	out, err := exec.Command(bin, "--block-rpcs=help").CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-ga --block-rpcs=help: %v: %s", err, out)
	}
	var blocked []string
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "guest-") && !slices.Contains(allowed, f) {
			blocked = append(blocked, f)
		}
	}
	if !slices.Contains(blocked, "guest-shutdown") {
		t.Fatalf("cannot tell which commands to disable from: %s", out)
	}
	// Not t.TempDir: its long path can exceed the 108 bytes of a unix
	// socket address.
	dir, err := os.MkdirTemp("", "qga")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "qga.sock")
	cmd := exec.Command(bin, "--method=unix-listen", "--path="+sock,
		"--statedir="+dir, "--pidfile="+filepath.Join(dir, "qga.pid"),
		"--block-rpcs="+strings.Join(blocked, ","))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = killWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu-ga: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if conn, err := net.Dial("unix", sock); err == nil {
			conn.Close() // qemu-ga serves the next connection
			break
		}
		select {
		case <-exited:
			t.Fatalf("qemu-ga exited: %s", stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("qemu-ga did not listen in 10s")
		}
	}

	// Make sure the block list took before anything else runs.
	c := dialAgent(t, sock)
	var info struct {
		Commands []struct {
			Name    string `json:"name"`
			Enabled bool   `json:"enabled"`
		} `json:"supported_commands"`
	}
	if err := c.Execute(testCtx(t), "guest-info", nil, &info); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range info.Commands {
		if cmd.Enabled && !slices.Contains(allowed, cmd.Name) {
			t.Fatalf("qemu-ga left %s enabled", cmd.Name)
		}
	}
	c.Close()
	return sock
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialAgent(t *testing.T, sock string) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestAgentQueries(t *testing.T) {
	c := dialAgent(t, startAgent(t))
	ctx := testCtx(t)
	if err := c.Ping(ctx); err != nil {
		t.Fatal(err)
	}

	info, err := c.OSInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	release, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	if info.KernelRelease != strings.TrimSpace(string(release)) {
		t.Errorf("kernel-release = %q, host has %q", info.KernelRelease, release)
	}
	if osr, err := os.ReadFile("/etc/os-release"); err == nil {
		if !strings.Contains(string(osr), "\nID="+info.ID) && !strings.HasPrefix(string(osr), "ID="+info.ID) {
			t.Errorf("id = %q, not the ID of /etc/os-release", info.ID)
		}
	}
	if info.ID == "" || info.PrettyName == "" || info.Machine == "" || info.KernelVersion == "" {
		t.Errorf("OSInfo = %+v", info)
	}

	name, err := c.HostName(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if host, _ := os.Hostname(); name != host {
		t.Errorf("HostName = %q, host is %q", name, host)
	}

	ifs, err := c.Interfaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(ifs, func(i Interface) bool { return i.Name == "lo" })
	if i < 0 {
		t.Fatalf("no lo in %+v", ifs)
	}
	if !slices.Contains(ifs[i].IPAddresses, IPAddress{Type: "ipv4", Address: "127.0.0.1", Prefix: 8}) {
		t.Errorf("lo addresses = %+v", ifs[i].IPAddresses)
	}

	err = c.Execute(ctx, "guest-no-such-command", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "guest-no-such-command" {
		t.Errorf("unknown command = %#v", err)
	}
	// A disabled command is refused the same way (the tests rely on it).
	err = c.Execute(ctx, "guest-get-time", nil, nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("disabled command = %#v", err)
	}
}

func TestAgentExec(t *testing.T) {
	c := dialAgent(t, startAgent(t))
	ctx := testCtx(t)

	res, err := c.Exec(ctx, ExecRequest{Path: "/bin/sh", Args: []string{"-c", "echo out; echo err >&2; exit 3"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || res.Signal != 0 || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.Truncated {
		t.Errorf("sh = %+v (stdout %q, stderr %q)", res, res.Stdout, res.Stderr)
	}

	input := []byte("binary \x00\xff\n and text\n")
	res, err = c.Exec(ctx, ExecRequest{Path: "/bin/cat", Input: input})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || !bytes.Equal(res.Stdout, input) || len(res.Stderr) != 0 {
		t.Errorf("cat = %+v", res)
	}

	res, err = c.Exec(ctx, ExecRequest{Path: "/bin/sh", Args: []string{"-c", `echo "$VDC_QGA_TEST"`}, Env: []string{"VDC_QGA_TEST=from env"}})
	if err != nil || string(res.Stdout) != "from env\n" {
		t.Errorf("env: %+v, %v", res, err)
	}

	res, err = c.Exec(ctx, ExecRequest{Path: "/bin/sh", Args: []string{"-c", "kill -KILL $$"}})
	if err != nil || res.Signal != 9 || res.ExitCode != -1 {
		t.Errorf("killed: %+v, %v", res, err)
	}

	_, err = c.Exec(ctx, ExecRequest{Path: "/nonexistent/vdc-test-binary"})
	var qe *Error
	if !errors.As(err, &qe) || qe.Command != "guest-exec" || qe.Class != "GenericError" || !strings.Contains(qe.Desc, "vdc-test-binary") {
		t.Errorf("missing binary = %#v", err)
	}
	if err := c.Ping(ctx); err != nil {
		t.Errorf("Ping after a failed exec = %v", err)
	}
}

func TestAgentConcurrentCalls(t *testing.T) {
	c := dialAgent(t, startAgent(t))
	ctx := testCtx(t)
	host, _ := os.Hostname()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10 {
				switch (g + i) % 4 {
				case 0:
					if err := c.Ping(ctx); err != nil {
						t.Errorf("Ping: %v", err)
					}
				case 1:
					if name, err := c.HostName(ctx); err != nil || name != host {
						t.Errorf("HostName = %q, %v", name, err)
					}
				case 2:
					if info, err := c.OSInfo(ctx); err != nil || info.ID == "" {
						t.Errorf("OSInfo = %+v, %v", info, err)
					}
				case 3:
					word := fmt.Sprintf("g%di%d", g, i)
					res, err := c.Exec(ctx, ExecRequest{Path: "/bin/echo", Args: []string{word}})
					if err != nil || string(res.Stdout) != word+"\n" {
						t.Errorf("echo %s = %q, %v", word, res.Stdout, err)
					}
				}
			}
		})
	}
	wg.Wait()
}

// qemu-ga keeps its parser state from one connection to the next: half a
// command left by a client that went away must not spoil the next one.
func TestAgentReconnectAfterHalfCommand(t *testing.T) {
	sock := startAgent(t)
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte(`{"execute": "guest-get-host-name", "argu`))
	conn.Close()
	for range 3 {
		c := dialAgent(t, sock)
		if err := c.Ping(testCtx(t)); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

// Deadlines around one round trip make some commands time out before they
// are sent and some after; the client must stay in step whatever it left in
// the stream. (Timeouts at chosen points are in the fake agent's tests.)
func TestAgentTimeoutsKeepStep(t *testing.T) {
	c := dialAgent(t, startAgent(t))
	host, _ := os.Hostname()
	start := time.Now()
	for range 10 {
		if _, err := c.HostName(testCtx(t)); err != nil {
			t.Fatal(err)
		}
	}
	step := time.Since(start) / 10 / 20 // deadlines from 0 to twice a round trip
	timedOut := 0
	defer func() { t.Logf("%d of 40 timed out (steps of %v)", timedOut, step) }()
	for i := range 40 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*step)
		name, err := c.HostName(ctx)
		cancel()
		if err != nil {
			timedOut++
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("HostName = %v", err)
		}
		if err == nil && name != host {
			t.Fatalf("HostName = %q, want %q", name, host)
		}
		info, err := c.OSInfo(testCtx(t))
		if err != nil || info.ID == "" {
			t.Fatalf("OSInfo after a timeout = %+v, %v", info, err)
		}
	}
}
