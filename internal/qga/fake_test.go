package qga

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAgent is a scripted agent on a unix socket, for what the real
// qemu-ga cannot be made to do on cue: answer late, stay silent, go away
// on guest-shutdown. It parses the stream the way qemu-ga does (a 0xFF
// resets the parser and is answered with a parse error) and serves one
// connection at a time, one command at a time.
type fakeAgent struct {
	sock   string
	ln     net.Listener
	echoID bool // agents before QEMU 2.12 do not echo ids
	handle func(fakeCmd) []byte
	stop   chan struct{} // closed at cleanup: blocked handlers give up

	mu   sync.Mutex
	seen []string
}

type fakeCmd struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
	conn      net.Conn
	echoID    bool
}

// reply is the answer line for c: ans is `{"return": ...}` or
// `{"error": ...}`.
func (c fakeCmd) reply(ans string) []byte {
	var m map[string]any
	if err := json.Unmarshal([]byte(ans), &m); err != nil {
		panic(fmt.Sprintf("bad scripted answer %s: %v", ans, err))
	}
	if c.echoID && c.ID != nil {
		m["id"] = c.ID
	}
	b, _ := json.Marshal(m)
	return append(b, '\n')
}

// basic answers like a healthy agent named "fresh".
func basic(c fakeCmd) []byte {
	switch c.Execute {
	case "guest-sync-delimited":
		var a struct{ ID uint64 }
		json.Unmarshal(c.Arguments, &a)
		return []byte(fmt.Sprintf("\xff{\"return\": %d}\n", a.ID))
	case "guest-ping":
		return c.reply(`{"return": {}}`)
	case "guest-get-host-name":
		return c.reply(`{"return": {"host-name": "fresh"}}`)
	}
	return c.reply(fmt.Sprintf(`{"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}}`, c.Execute))
}

func newFakeAgent(t *testing.T, echoID bool, handle func(fakeCmd) []byte) *fakeAgent {
	t.Helper()
	dir, err := os.MkdirTemp("", "qga")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeAgent{sock: filepath.Join(dir, "qga.sock"), echoID: echoID, handle: handle, stop: make(chan struct{})}
	f.ln, err = net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.serve(conn)
		}
	})
	t.Cleanup(func() {
		close(f.stop)
		f.ln.Close()
		wg.Wait()
		os.RemoveAll(dir)
	})
	return f
}

func (f *fakeAgent) serve(conn net.Conn) {
	defer conn.Close()
	// A handler blocked on a gate must not keep the cleanup waiting.
	go func() {
		<-f.stop
		conn.Close()
	}()
	r := bufio.NewReader(conn)
	var buf []byte
	depth, inStr, esc := 0, false, false
	for {
		b, err := r.ReadByte()
		if err != nil {
			return
		}
		if b == 0xFF {
			buf, depth, inStr, esc = nil, 0, false, false
			conn.Write([]byte(`{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}` + "\n"))
			continue
		}
		if depth == 0 && b != '{' {
			continue
		}
		buf = append(buf, b)
		switch {
		case esc:
			esc = false
		case inStr && b == '\\':
			esc = true
		case b == '"':
			inStr = !inStr
		case inStr:
		case b == '{' || b == '[':
			depth++
		case b == '}' || b == ']':
			depth--
		}
		if depth > 0 {
			continue
		}
		c := fakeCmd{conn: conn, echoID: f.echoID}
		if err := json.Unmarshal(buf, &c); err != nil {
			conn.Write([]byte(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}` + "\n"))
		} else {
			f.mu.Lock()
			f.seen = append(f.seen, c.Execute)
			f.mu.Unlock()
			if out := f.handle(c); out != nil {
				conn.Write(out)
			}
		}
		buf = nil
	}
}

func (f *fakeAgent) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.seen)
}

// gate blocks a handler until the test opens it (or the test ends).
func (f *fakeAgent) gate(open chan struct{}) bool {
	select {
	case <-open:
		return true
	case <-f.stop:
		return false
	}
}

func dialFake(t *testing.T, f *fakeAgent) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, f.sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialSilentPeer(t *testing.T) {
	dir, err := os.MkdirTemp("", "qga")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "qga.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Accepts, reads everything, never answers: a VM whose guest runs no
	// agent.
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 4096)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = Dial(ctx, sock)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second { // the agent never answers
		t.Errorf("Dial took %v", d)
	}
	if !strings.Contains(err.Error(), "no answer from the guest agent") {
		t.Errorf("error %q does not say what happened", err)
	}
}

func TestDialMissingSocket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := Dial(ctx, filepath.Join(t.TempDir(), "nothing.sock")); err == nil {
		t.Fatal("Dial to a missing socket succeeded")
	}
}

// A command that timed out is answered later; the answer must not be taken
// for the next command's. With an agent that echoes no ids (QEMU < 2.12)
// only the sync before the next command tells them apart.
func TestResyncAfterTimeout(t *testing.T) {
	for _, echoID := range []bool{false, true} {
		t.Run(fmt.Sprintf("echoID=%v", echoID), func(t *testing.T) {
			open := make(chan struct{})
			var f *fakeAgent
			late := true
			f = newFakeAgent(t, echoID, func(c fakeCmd) []byte {
				if c.Execute == "guest-get-host-name" && late {
					late = false
					if !f.gate(open) {
						return nil
					}
					return c.reply(`{"return": {"host-name": "late"}}`)
				}
				return basic(c)
			})
			c := dialFake(t, f)

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if _, err := c.HostName(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("first HostName = %v, want DeadlineExceeded", err)
			}
			// The next call times out too, in its sync: the agent is still
			// busy. Its sync answer comes late as well.
			ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel2()
			if err := c.Ping(ctx2); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Ping while busy = %v, want DeadlineExceeded", err)
			}
			close(open)
			ctx3, cancel3 := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel3()
			name, err := c.HostName(ctx3)
			if err != nil || name != "fresh" {
				t.Fatalf("HostName after timeout = %q, %v; want fresh", name, err)
			}
			want := []string{
				"guest-sync-delimited", "guest-get-host-name", // Dial, first call
				"guest-sync-delimited",                        // Ping, never sent
				"guest-sync-delimited", "guest-get-host-name", // after the release
			}
			if got := f.commands(); !slices.Equal(got, want) {
				t.Errorf("agent saw %v, want %v", got, want)
			}
			// In step again: no more syncs.
			if err := c.Ping(ctx3); err != nil {
				t.Fatal(err)
			}
			if got := f.commands(); got[len(got)-1] != "guest-ping" || len(got) != len(want)+1 {
				t.Errorf("agent saw %v", got)
			}
		})
	}
}

func TestWaitingCallerHonoursCtx(t *testing.T) {
	open := make(chan struct{})
	var f *fakeAgent
	f = newFakeAgent(t, true, func(c fakeCmd) []byte {
		if c.Execute == "guest-get-host-name" && !f.gate(open) {
			return nil
		}
		return basic(c)
	})
	c := dialFake(t, f)
	slow := make(chan error, 1)
	go func() {
		_, err := c.HostName(context.Background())
		slow <- err
	}()
	for !slices.Contains(f.commands(), "guest-get-host-name") {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Ping behind a slow command = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second { // the slow command never ends
		t.Errorf("Ping took %v", d)
	}
	close(open)
	if err := <-slow; err != nil {
		t.Errorf("slow HostName = %v", err)
	}
}

func TestCloseDuringCall(t *testing.T) {
	var f *fakeAgent
	f = newFakeAgent(t, true, func(c fakeCmd) []byte {
		if c.Execute == "guest-ping" {
			f.gate(nil) // never answers
			return nil
		}
		return basic(c)
	})
	c := dialFake(t, f)
	res := make(chan error, 1)
	go func() { res <- c.Ping(context.Background()) }()
	for !slices.Contains(f.commands(), "guest-ping") {
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()
	select {
	case err := <-res:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Ping during Close = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the call")
	}
	if _, err := c.HostName(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close = %v, want ErrClosed", err)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("connection ends", func(t *testing.T) {
		mode := make(chan string, 1)
		f := newFakeAgent(t, true, func(c fakeCmd) []byte {
			if c.Execute == "guest-shutdown" {
				var a struct{ Mode string }
				json.Unmarshal(c.Arguments, &a)
				mode <- a.Mode
				c.conn.Close() // QEMU exits with the guest
				return nil
			}
			return basic(c)
		})
		c := dialFake(t, f)
		if err := c.Shutdown(context.Background(), "powerdown"); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if m := <-mode; m != "powerdown" {
			t.Errorf("mode = %q", m)
		}
		if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("Ping after the connection ended = %v, want ErrClosed", err)
		}
	})
	t.Run("silent until ctx ends", func(t *testing.T) {
		f := newFakeAgent(t, true, func(c fakeCmd) []byte {
			if c.Execute == "guest-shutdown" {
				if c.Arguments != nil {
					return c.reply(`{"error": {"class": "GenericError", "desc": "unexpected arguments"}}`)
				}
				return nil
			}
			return basic(c)
		})
		c := dialFake(t, f)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		if err := c.Shutdown(ctx, ""); err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
		if d := time.Since(start); d > 10*time.Second { // the guest never answers
			t.Errorf("Shutdown took %v", d)
		}
		// Here the guest did not go down (a reboot, say): the client
		// syncs again and goes on.
		if err := c.Ping(context.Background()); err != nil {
			t.Errorf("Ping after Shutdown = %v", err)
		}
		want := []string{"guest-sync-delimited", "guest-shutdown", "guest-sync-delimited", "guest-ping"}
		if got := f.commands(); !slices.Equal(got, want) {
			t.Errorf("agent saw %v, want %v", got, want)
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := newFakeAgent(t, true, func(c fakeCmd) []byte {
			if c.Execute == "guest-shutdown" {
				return c.reply(`{"error": {"class": "CommandNotFound", "desc": "Command guest-shutdown has been disabled"}}`)
			}
			return basic(c)
		})
		c := dialFake(t, f)
		err := c.Shutdown(context.Background(), "reboot")
		var qe *Error
		if !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "guest-shutdown" {
			t.Fatalf("Shutdown = %#v, want CommandNotFound", err)
		}
		if err := c.Ping(context.Background()); err != nil {
			t.Errorf("Ping after a refused Shutdown = %v", err)
		}
	})
}

func TestExecPolling(t *testing.T) {
	var mu sync.Mutex
	var polls []time.Time
	f := newFakeAgent(t, true, func(c fakeCmd) []byte {
		mu.Lock()
		defer mu.Unlock()
		switch c.Execute {
		case "guest-exec":
			return c.reply(`{"return": {"pid": 42}}`)
		case "guest-exec-status":
			polls = append(polls, time.Now())
			if len(polls) < 6 {
				return c.reply(`{"return": {"exited": false}}`)
			}
			return c.reply(`{"return": {"exited": true, "exitcode": 0, "out-data": "aGk=", "out-truncated": true}}`)
		}
		return basic(c)
	})
	c := dialFake(t, f)
	res, err := c.Exec(context.Background(), ExecRequest{Path: "/bin/true"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "hi" || res.Stderr != nil || !res.Truncated || res.ExitCode != 0 {
		t.Errorf("result = %+v", res)
	}
	// 20, 40, 80, 160, 320, 500 ms: the gaps grow.
	mu.Lock()
	if gap := polls[5].Sub(polls[4]); gap < 300*time.Millisecond {
		t.Errorf("6th poll came %v after the 5th: no back-off", gap)
	}
	polls = nil
	mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Exec(ctx, ExecRequest{Path: "/bin/sleep"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "pid 42") {
		t.Errorf("Exec past its ctx = %v, want DeadlineExceeded naming pid 42", err)
	}
}
