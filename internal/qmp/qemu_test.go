package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/lease"
	"github.com/vdc-project/vdc/internal/testenv"
)

// requireTool returns the path of a program the test needs, or skips the
// test when it is not installed, except under VDC_REQUIRE_E2E=1 (CI), where
// a missing tool is a failure.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	testenv.Skip(t, "%s is not installed: %v", name, err)
	return ""
}

type testQEMU struct {
	c      *Client
	sock   string
	exited chan struct{}
}

// startQEMU runs a QEMU with only a QMP monitor and returns a connected
// client. The process is killed when the test ends.
func startQEMU(t *testing.T, extra ...string) testQEMU {
	t.Helper()
	bin := requireTool(t, "qemu-system-x86_64")
	// Not t.TempDir: its long path can exceed the 108 bytes of a unix
	// socket address.
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "q.sock")
	args := append([]string{
		"-machine", "none", "-nodefaults", "-display", "none",
		"-chardev", "socket,id=qmp0,path=" + sock + ",server=on,wait=off",
		"-mon", "chardev=qmp0,mode=control",
	}, extra...)
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = killWithParent()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start qemu: %v", err)
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
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := Dial(ctx, sock)
		cancel()
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return testQEMU{c: c, sock: sock, exited: exited}
		}
		select {
		case <-exited:
			t.Fatalf("qemu exited: %s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("qmp socket did not answer in 10s: %v", err)
		}
	}
}

func ctx5s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestQEMUQueries(t *testing.T) {
	c := startQEMU(t).c
	ctx := ctx5s(t)

	var v struct {
		QEMU struct{ Major, Minor, Micro int } `json:"qemu"`
	}
	if err := c.Execute(ctx, "query-version", nil, &v); err != nil {
		t.Fatal(err)
	}
	if v.QEMU.Major < 2 {
		t.Errorf("query-version = %+v", v)
	}
	var st struct {
		Status  string `json:"status"`
		Running bool   `json:"running"`
	}
	if err := c.Execute(ctx, "query-status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Status != "running" || !st.Running {
		t.Errorf("query-status = %+v", st)
	}

	err := c.Execute(ctx, "no-such-command", nil, nil)
	var qe *Error
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "no-such-command" {
		t.Errorf("unknown command: %#v", err)
	}
	// Bad arguments are a GenericError, and the connection goes on.
	err = c.Execute(ctx, "query-status", map[string]int{"bogus": 1}, nil)
	if !errors.As(err, &qe) || qe.Class != "GenericError" {
		t.Errorf("bad arguments: %#v", err)
	}

	// query-qmp-schema is about 200 KiB: no fixed buffer may cut it.
	var schema []json.RawMessage
	if err := c.Execute(ctx, "query-qmp-schema", nil, &schema); err != nil {
		t.Fatal(err)
	}
	if len(schema) < 100 {
		t.Errorf("query-qmp-schema has %d entries", len(schema))
	}
	// A nil result discards the answer.
	if err := c.Execute(ctx, "query-status", nil, nil); err != nil {
		t.Fatal(err)
	}
}

// Each goroutine sends commands whose answers tell them apart: the error
// text of an unknown command names it, and qom-get returns what was set.
func TestQEMUConcurrentExecutes(t *testing.T) {
	c := startQEMU(t, "-name", "vdc-qmp-test").c
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 25 {
				name := fmt.Sprintf("x-nope-%d-%d", g, i)
				err := c.Execute(ctx, name, nil, nil)
				var qe *Error
				if !errors.As(err, &qe) || qe.Command != name || !strings.Contains(qe.Desc, name) {
					t.Errorf("%s: got %v", name, err)
					return
				}
				var n struct{ Name string }
				if err := c.Execute(ctx, "query-name", nil, &n); err != nil || n.Name != "vdc-qmp-test" {
					t.Errorf("query-name = %+v, %v", n, err)
					return
				}
				var st struct{ Status string }
				if err := c.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != "running" {
					t.Errorf("query-status = %+v, %v", st, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestQEMUEvents(t *testing.T) {
	c := startQEMU(t).c
	ctx := ctx5s(t)
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()
	before := time.Now().Add(-time.Minute)
	for _, step := range []struct{ cmd, event, status string }{
		{"stop", "STOP", "paused"},
		{"cont", "RESUME", "running"},
	} {
		if err := c.Execute(ctx, step.cmd, nil, nil); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-events:
			if e.Name != step.event {
				t.Errorf("after %s: event %s, want %s", step.cmd, e.Name, step.event)
			}
			if e.Time.Before(before) {
				t.Errorf("%s time = %v", e.Name, e.Time)
			}
		case <-ctx.Done():
			t.Fatalf("no %s event", step.event)
		}
		var st struct{ Status string }
		if err := c.Execute(ctx, "query-status", nil, &st); err != nil || st.Status != step.status {
			t.Errorf("after %s: status %+v, %v", step.cmd, st, err)
		}
	}
}

func TestQEMUQuit(t *testing.T) {
	q := startQEMU(t)
	c := q.c
	ctx := ctx5s(t)
	events, _ := c.Subscribe()
	// QEMU 7.2 answers quit before it closes the socket, but that is not
	// promised: losing the answer to the close is success too.
	if err := c.Execute(ctx, "quit", nil, nil); err != nil && !errors.Is(err, ErrClosed) {
		t.Fatalf("quit: %v", err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("Done not closed after quit")
	}
	if c.Err() == nil || errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err = %v, want why QEMU went away", c.Err())
	}
	var names []string
	for e := range events { // closed with the connection
		names = append(names, e.Name)
	}
	if len(names) == 0 || names[0] != "SHUTDOWN" {
		t.Errorf("events after quit = %v, want SHUTDOWN", names)
	}
	err := c.Execute(ctx, "query-status", nil, nil)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after quit = %v, want ErrClosed", err)
	}
	select {
	case <-q.exited:
	case <-time.After(10 * time.Second):
		t.Error("qemu still running 10s after quit")
	}
}

func TestQEMUContext(t *testing.T) {
	q := startQEMU(t)
	c := q.c
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Execute(ctx, "query-status", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Execute with cancelled ctx = %v", err)
	}
	// Commands racing a deadline either finish or report it; whichever,
	// the client stays usable and later answers are not mixed up.
	for i := range 50 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i)*20*time.Microsecond)
		var st struct{ Status string }
		err := c.Execute(ctx, "query-status", nil, &st)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Execute = %v", err)
		}
		if err == nil && st.Status != "running" {
			t.Fatalf("status = %q", st.Status)
		}
	}
	var n struct{ Name string }
	if err := c.Execute(ctx5s(t), "query-name", nil, &n); err != nil {
		t.Fatal(err)
	}
	// A second client on the same socket is not served while the first is
	// connected: Dial must end with its ctx rather than hang.
	dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer dcancel()
	if _, err := Dial(dctx, q.sock); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second Dial = %v, want DeadlineExceeded", err)
	}
}

// A file passed with getfd stays open in QEMU after we close ours (its
// lock with it), until closefd.
func TestPassFileToQEMU(t *testing.T) {
	q := startQEMU(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p := filepath.Join(t.TempDir(), "lease")
	f, err := lease.Acquire(p, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := q.c.ExecuteWithFile(ctx, "getfd", map[string]string{"fdname": "lease"}, nil, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if held, _, _ := lease.Held(p); !held {
		t.Fatal("QEMU let go of the file passed to it")
	}
	// It keeps it when the connection that passed it ends (the agent dies).
	q.c.Close()
	if held, _, _ := lease.Held(p); !held {
		t.Fatal("QEMU let go of the file when the QMP connection ended")
	}
	if q.c, err = Dial(ctx, q.sock); err != nil {
		t.Fatal(err)
	}
	if err := q.c.Execute(ctx, "closefd", map[string]string{"fdname": "lease"}, nil); err != nil {
		t.Fatal(err)
	}
	if held, _, _ := lease.Held(p); held {
		t.Fatal("the file is still held after closefd")
	}
	var qe *Error
	if err := q.c.Execute(ctx, "closefd", map[string]string{"fdname": "lease"}, nil); !errors.As(err, &qe) {
		t.Fatalf("closefd of an unknown name: want a QMP error, got %v", err)
	}
}
