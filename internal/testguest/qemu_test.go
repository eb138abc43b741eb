package testguest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// This file is a deliberately small QEMU harness for the end-to-end tests:
// a plain command line, and just enough QMP and guest-agent protocol to
// drive it. The product's own QMP/QGA clients live elsewhere and are not
// used here, so that these tests check the guest, not those clients.

type testVM struct {
	t       *testing.T
	cmd     *exec.Cmd
	started time.Time
	serial  string // console log file
	stderr  string // QEMU's own messages
	qgaSock string
	qmpSock string
	exited  chan struct{}
	waitErr error // valid once exited is closed
}

// startVM boots the built guest under TCG with a guest-agent channel, a
// user-mode NIC and the console in a file. QEMU is killed at cleanup.
func startVM(t *testing.T, g Result, hostname, extraCmdline string) *testVM {
	t.Helper()
	return startVMWith(t, g, vmConfig{hostname: hostname, cmdline: extraCmdline})
}

// vmConfig is what a test VM is made of beyond the guest itself.
type vmConfig struct {
	hostname string
	cmdline  string   // appended to the kernel command line
	netns    string   // run QEMU in this network namespace ("": this one)
	nics     []string // QEMU arguments for the NICs; nil: one user-mode virtio NIC
	extra    []string // more QEMU arguments (hot-plug ports...)
}

func startVMWith(t *testing.T, g Result, c vmConfig) *testVM {
	t.Helper()
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be longer.
	sockDir, err := os.MkdirTemp("", "vdctg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	logDir := t.TempDir()
	vm := &testVM{
		t:       t,
		serial:  filepath.Join(logDir, "console.log"),
		stderr:  filepath.Join(logDir, "qemu.log"),
		qgaSock: filepath.Join(sockDir, "qga.sock"),
		qmpSock: filepath.Join(sockDir, "qmp.sock"),
		exited:  make(chan struct{}),
	}
	cmdline := g.Cmdline + " vdc.hostname=" + c.hostname
	if c.cmdline != "" {
		cmdline += " " + c.cmdline
	}
	nics := c.nics
	if nics == nil {
		nics = []string{"-netdev", "user,id=net0", "-device", "virtio-net-pci,netdev=net0"}
	}
	args := []string{
		"-name", "vdc-testguest-" + c.hostname,
		"-accel", "tcg", "-machine", "q35", "-m", "256",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", g.Kernel, "-initrd", g.Initrd, "-append", cmdline,
		"-serial", "file:" + vm.serial,
		"-chardev", "socket,id=qga0,path=" + vm.qgaSock + ",server=on,wait=off",
		"-device", "virtio-serial-pci,id=vser0",
		"-device", "virtserialport,bus=vser0.0,chardev=qga0,name=org.qemu.guest_agent.0",
		"-qmp", "unix:" + vm.qmpSock + ",server=on,wait=off",
	}
	args = append(append(args, nics...), c.extra...)
	bin := "qemu-system-x86_64"
	if c.netns != "" {
		// ip execs QEMU in the namespace: same process, so the kill and
		// Pdeathsig below still reach it.
		args = append([]string{"netns", "exec", c.netns, bin}, args...)
		bin = "ip"
	}
	errFile, err := os.Create(vm.stderr)
	if err != nil {
		t.Fatal(err)
	}
	vm.cmd = exec.Command(bin, args...)
	vm.cmd.Stdout = errFile
	vm.cmd.Stderr = errFile
	// If the test binary dies without running cleanups, QEMU goes too.
	vm.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	vm.started = time.Now()
	if err := vm.cmd.Start(); err != nil {
		errFile.Close()
		t.Fatalf("start qemu: %v", err)
	}
	go func() {
		vm.waitErr = vm.cmd.Wait()
		errFile.Close()
		close(vm.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-vm.exited:
		default:
			vm.cmd.Process.Kill()
			<-vm.exited
		}
		if t.Failed() {
			t.Logf("console:\n%s", vm.console())
			if b, _ := os.ReadFile(vm.stderr); len(b) > 0 {
				t.Logf("qemu stderr:\n%s", b)
			}
		}
	})
	return vm
}

func (vm *testVM) console() string {
	b, _ := os.ReadFile(vm.serial)
	return string(b)
}

func (vm *testVM) hasExited() bool {
	select {
	case <-vm.exited:
		return true
	default:
		return false
	}
}

// waitConsole waits until the console shows text and returns how long
// after QEMU's start that was noticed.
func (vm *testVM) waitConsole(ctx context.Context, text string) (time.Duration, error) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if strings.Contains(vm.console(), text) {
			return time.Since(vm.started), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("console never showed %q: %w", text, ctx.Err())
		case <-vm.exited:
			if strings.Contains(vm.console(), text) {
				return time.Since(vm.started), nil
			}
			return 0, fmt.Errorf("qemu exited (%v) before the console showed %q", vm.waitErr, text)
		case <-tick.C:
		}
	}
}

// waitExit waits for QEMU to exit and fails unless it exited cleanly
// (status 0: the guest powered the machine off).
func (vm *testVM) waitExit(ctx context.Context) (time.Duration, error) {
	select {
	case <-vm.exited:
		if vm.waitErr != nil {
			return 0, fmt.Errorf("qemu exited with %v", vm.waitErr)
		}
		return time.Since(vm.started), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("qemu still running: %w", ctx.Err())
	}
}

// dialUnix connects to one of QEMU's sockets, waiting for QEMU to create it.
func dialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connect to %s: %w (last error: %v)", path, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// qmpConn is a QMP session past capability negotiation.
type qmpConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialQMP(ctx context.Context, path string) (*qmpConn, error) {
	c, err := dialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	q := &qmpConn{c: c, r: bufio.NewReader(c)}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := q.r.ReadBytes('\n'); err != nil { // greeting
		c.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	if err := q.execute(ctx, "qmp_capabilities"); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

// execute runs a command without arguments and waits for its answer,
// skipping the events QEMU sends in between.
func (q *qmpConn) execute(ctx context.Context, command string) error {
	return q.executeArgs(ctx, command, nil)
}

// executeArgs runs a command with arguments (nil for none).
func (q *qmpConn) executeArgs(ctx context.Context, command string, args any) error {
	if dl, ok := ctx.Deadline(); ok {
		q.c.SetDeadline(dl)
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.c.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return fmt.Errorf("qmp %s: %w", command, err)
		}
		var msg struct {
			Return json.RawMessage `json:"return"`
			Error  *struct{ Class, Desc string }
		}
		if err := json.Unmarshal(line, &msg); err != nil {
			return fmt.Errorf("qmp %s: %w: %s", command, err, line)
		}
		if msg.Error != nil {
			return fmt.Errorf("qmp %s: %s: %s", command, msg.Error.Class, msg.Error.Desc)
		}
		if msg.Return != nil {
			return nil
		}
	}
}

func (q *qmpConn) Close() error { return q.c.Close() }

// qgaConn speaks the guest-agent protocol: newline-free JSON requests,
// one JSON answer a line, and guest-sync-delimited to find the start of a
// fresh answer after anything stale on the channel.
type qgaConn struct {
	c  net.Conn
	r  *bufio.Reader
	id int
}

// dialQGA connects and synchronizes with the agent, retrying until it
// answers (it may not be running yet) or ctx ends.
func dialQGA(ctx context.Context, path string) (*qgaConn, error) {
	c, err := dialUnix(ctx, path)
	if err != nil {
		return nil, err
	}
	g := &qgaConn{c: c, r: bufio.NewReader(c), id: int(time.Now().UnixNano() % 1e9)}
	if err := g.resync(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return g, nil
}

// resync repeats guest-sync-delimited until the agent answers. While no
// agent has the port open, QEMU leaves what we send in the socket and the
// agent reads it all when it starts; the 0xFF bytes make it skip the
// leftovers and the ids tell which answer is the current one.
func (g *qgaConn) resync(ctx context.Context) error {
	for {
		err := g.sync(time.Second)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("guest agent never answered guest-sync-delimited: %w (last: %v)", ctx.Err(), err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return err
		}
	}
}

// sync sends 0xFF (which makes qemu-ga drop any partial request) and a
// guest-sync-delimited, then skips input up to the 0xFF the agent puts
// before its answer, and checks that the answer echoes our id.
func (g *qgaConn) sync(wait time.Duration) error {
	g.id++
	g.c.SetDeadline(time.Now().Add(wait))
	req := fmt.Sprintf("\xff"+`{"execute":"guest-sync-delimited","arguments":{"id":%d}}`, g.id)
	if _, err := g.c.Write([]byte(req)); err != nil {
		return err
	}
	for {
		if _, err := g.r.ReadBytes(0xff); err != nil {
			return err
		}
		line, err := g.r.ReadBytes('\n')
		if err != nil {
			return err
		}
		var resp struct{ Return int }
		if json.Unmarshal(line, &resp) == nil && resp.Return == g.id {
			return nil
		}
		// An answer to an earlier sync: keep looking for ours.
	}
}

// call runs one agent command and decodes its "return" into out.
func (g *qgaConn) call(ctx context.Context, command string, args, out any) error {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if dl, ok := ctx.Deadline(); ok {
		g.c.SetDeadline(dl)
	} else {
		g.c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	if _, err := g.c.Write(b); err != nil {
		return fmt.Errorf("qga %s: %w", command, err)
	}
	line, err := g.r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("qga %s: %w", command, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
		Error  *struct{ Class, Desc string }
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &resp); err != nil {
		return fmt.Errorf("qga %s: %w: %q", command, err, line)
	}
	if resp.Error != nil {
		return fmt.Errorf("qga %s: %s: %s", command, resp.Error.Class, resp.Error.Desc)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Return, out); err != nil {
			return fmt.Errorf("qga %s: decode %s: %w", command, resp.Return, err)
		}
	}
	return nil
}

// send writes a command whose success has no answer (guest-shutdown).
func (g *qgaConn) send(command string) error {
	g.c.SetDeadline(time.Now().Add(10 * time.Second))
	_, err := fmt.Fprintf(g.c, `{"execute":%q}`, command)
	return err
}

func (g *qgaConn) Close() error { return g.c.Close() }

// exec runs a program in the guest through guest-exec and returns its
// exit code and standard output once it has finished.
func (g *qgaConn) exec(ctx context.Context, path string, args ...string) (int, string, error) {
	var started struct{ Pid int }
	err := g.call(ctx, "guest-exec", map[string]any{"path": path, "arg": args, "capture-output": true}, &started)
	if err != nil {
		return 0, "", err
	}
	for {
		var st struct {
			Exited   bool
			Exitcode int
			OutData  []byte `json:"out-data"` // base64 in JSON
		}
		if err := g.call(ctx, "guest-exec-status", map[string]any{"pid": started.Pid}, &st); err != nil {
			return 0, "", err
		}
		if st.Exited {
			return st.Exitcode, string(st.OutData), nil
		}
		select {
		case <-ctx.Done():
			return 0, "", fmt.Errorf("guest-exec %s: still running: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
