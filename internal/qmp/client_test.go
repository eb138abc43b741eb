package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// These tests play QEMU's side of the protocol over net.Pipe, so that the
// framing is covered where QEMU is not installed. They speak the wire format
// QEMU 7.2 was seen to send (CRLF after each object, ids echoed as sent).

const greeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}` + "\r\n"

type cmd struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments"`
	ID        json.RawMessage `json:"id"`
}

// pipeQEMU is the server end of a net.Pipe. Commands the client sends are
// delivered on cmds; the test answers with send.
type pipeQEMU struct {
	t    *testing.T
	conn net.Conn
	cmds chan cmd
}

// dialPipe connects a Client to a scripted QEMU that greets, answers
// qmp_capabilities (after an early event the client must ignore), and then
// hands every command to the test.
func dialPipe(t *testing.T) (*Client, *pipeQEMU) {
	t.Helper()
	cli, srv := net.Pipe()
	q := &pipeQEMU{t: t, conn: srv, cmds: make(chan cmd, 100)}
	go func() {
		defer close(q.cmds)
		if _, err := io.WriteString(srv, greeting); err != nil {
			return
		}
		dec := json.NewDecoder(srv)
		first := true
		for {
			var c cmd
			if err := dec.Decode(&c); err != nil {
				return
			}
			if first {
				first = false
				if c.Execute != "qmp_capabilities" {
					t.Errorf("first command = %q, want qmp_capabilities", c.Execute)
				}
				q.send(`{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "EARLY"}`)
				q.send(fmt.Sprintf(`{"return": {}, "id": %s}`, c.ID))
				continue
			}
			q.cmds <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := newClient(ctx, cli)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		srv.Close()
	})
	return c, q
}

func (q *pipeQEMU) send(s string) {
	if _, err := io.WriteString(q.conn, s+"\r\n"); err != nil {
		q.t.Errorf("server write: %v", err)
	}
}

func (q *pipeQEMU) next() cmd {
	q.t.Helper()
	select {
	case c, ok := <-q.cmds:
		if !ok {
			q.t.Fatal("connection ended before the expected command")
		}
		return c
	case <-time.After(5 * time.Second):
		q.t.Fatal("no command within 5s")
	}
	return cmd{}
}

type execResult struct {
	err error
	res map[string]any
}

func goExecute(ctx context.Context, c *Client, command string, args any) chan execResult {
	out := make(chan execResult, 1)
	go func() {
		var r execResult
		r.err = c.Execute(ctx, command, args, &r.res)
		out <- r
	}()
	return out
}

func wait(t *testing.T, ch chan execResult) execResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Execute did not return within 5s")
	}
	return execResult{}
}

func TestFramingAnswersMatchedByIDWithEventsBetween(t *testing.T) {
	c, q := dialPipe(t)
	events, unsubscribe := c.Subscribe()
	defer unsubscribe()

	a := goExecute(context.Background(), c, "query-a", nil)
	ca := q.next()
	b := goExecute(context.Background(), c, "query-b", map[string]any{"x": 1})
	cb := q.next()
	e := goExecute(context.Background(), c, "query-e", nil)
	ce := q.next()
	if ca.Execute != "query-a" || cb.Execute != "query-b" || ce.Execute != "query-e" {
		t.Fatalf("commands = %s %s %s", ca.Execute, cb.Execute, ce.Execute)
	}
	if ca.Arguments != nil {
		t.Errorf("nil args sent as %s, want no arguments member", ca.Arguments)
	}
	if string(cb.Arguments) != `{"x":1}` {
		t.Errorf("args = %s", cb.Arguments)
	}
	if string(ca.ID) == string(cb.ID) || string(cb.ID) == string(ce.ID) {
		t.Errorf("ids not unique: %s %s %s", ca.ID, cb.ID, ce.ID)
	}

	// Answer out of order, with events around, one answer split in two
	// writes, and an answer without id (as for a command QEMU could not
	// parse) that must be ignored.
	q.send(`{"timestamp": {"seconds": 1700000000, "microseconds": 250}, "event": "STOP"}`)
	q.send(fmt.Sprintf(`{"return": {"who": "b"}, "id": %s}`, cb.ID))
	q.send(`{"error": {"class": "GenericError", "desc": "JSON parse error"}}`)
	io.WriteString(q.conn, fmt.Sprintf(`{"id": %s, "error": {"class": "Comm`, ce.ID))
	io.WriteString(q.conn, `andNotFound", "desc": "The command query-e has not been found"}}`+"\r\n")
	q.send(`{"event": "RESUME", "data": {"reason": "x"}, "timestamp": {"seconds": 1700000001, "microseconds": 0}}`)
	q.send(fmt.Sprintf(`{"return": {"who": "a"}, "id": %s}`, ca.ID))

	if r := wait(t, b); r.err != nil || r.res["who"] != "b" {
		t.Errorf("query-b = %v, %v", r.res, r.err)
	}
	r := wait(t, e)
	var qe *Error
	if !errors.As(r.err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "query-e" {
		t.Errorf("query-e error = %#v", r.err)
	} else if want := "qmp query-e: CommandNotFound: The command query-e has not been found"; qe.Error() != want {
		t.Errorf("Error() = %q, want %q", qe.Error(), want)
	}
	if r := wait(t, a); r.err != nil || r.res["who"] != "a" {
		t.Errorf("query-a = %v, %v", r.res, r.err)
	}

	for i, want := range []string{"STOP", "RESUME"} {
		select {
		case ev := <-events:
			if ev.Name != want {
				t.Errorf("event %d = %s, want %s", i, ev.Name, want)
			}
			if i == 0 && !ev.Time.Equal(time.Unix(1700000000, 250000)) {
				t.Errorf("STOP time = %v", ev.Time)
			}
			if i == 1 && string(ev.Data) != `{"reason": "x"}` {
				t.Errorf("RESUME data = %s", ev.Data)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
}

func TestFramingLargeAnswer(t *testing.T) {
	c, q := dialPipe(t)
	big := strings.Repeat("x", 8<<20)
	res := make(chan error, 1)
	var got struct{ Big string }
	go func() { res <- c.Execute(context.Background(), "query-big", nil, &got) }()
	cm := q.next()
	q.send(fmt.Sprintf(`{"return": {"Big": %q}, "id": %s}`, big, cm.ID))
	if err := <-res; err != nil {
		t.Fatal(err)
	}
	if got.Big != big {
		t.Fatalf("got %d bytes, want %d", len(got.Big), len(big))
	}
}

func TestFramingCancelDropsLateAnswer(t *testing.T) {
	c, q := dialPipe(t)
	ctx, cancel := context.WithCancel(context.Background())
	slow := goExecute(ctx, c, "query-slow", nil)
	cs := q.next()
	cancel()
	start := time.Now()
	if r := wait(t, slow); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Execute = %v, want context.Canceled", r.err)
	} else if !strings.Contains(r.err.Error(), "qmp query-slow") {
		t.Errorf("error %q does not name the command", r.err)
	}
	if d := time.Since(start); d > 10*time.Second { // the answer never comes: any bound is a margin for loaded machines
		t.Errorf("cancel took %v", d)
	}
	// The late answer arrives while the next command waits: it must not be
	// taken for the next command's answer.
	next := goExecute(context.Background(), c, "query-next", nil)
	cn := q.next()
	q.send(fmt.Sprintf(`{"return": {"who": "slow"}, "id": %s}`, cs.ID))
	q.send(fmt.Sprintf(`{"return": {"who": "next"}, "id": %s}`, cn.ID))
	if r := wait(t, next); r.err != nil || r.res["who"] != "next" {
		t.Fatalf("query-next = %v, %v", r.res, r.err)
	}
	// An already cancelled ctx sends nothing.
	if err := c.Execute(ctx, "query-never", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Execute with cancelled ctx = %v", err)
	}
}

func TestFramingSlowSubscriberDoesNotBlock(t *testing.T) {
	c, q := dialPipe(t)
	stuck, unsubscribe := c.Subscribe() // never read
	defer unsubscribe()
	live, unsubscribeLive := c.Subscribe()
	res := goExecute(context.Background(), c, "query-after", nil)
	cm := q.next()
	n := 3 * subscriberBuffer
	for i := 0; i < n; i++ {
		q.send(fmt.Sprintf(`{"event": "E%d", "timestamp": {"seconds": 1, "microseconds": 0}}`, i))
	}
	q.send(fmt.Sprintf(`{"return": {}, "id": %s}`, cm.ID))
	if r := wait(t, res); r.err != nil {
		t.Fatal(r.err)
	}
	if len(stuck) != subscriberBuffer {
		t.Errorf("stuck subscriber holds %d events, want %d", len(stuck), subscriberBuffer)
	}
	if ev := <-live; ev.Name != "E0" {
		t.Errorf("first event = %s, want E0", ev.Name)
	}
	unsubscribeLive()
	unsubscribeLive() // idempotent
	for range live {  // closed by unsubscribe; drains what was buffered
	}
}

func TestFramingPeerCloses(t *testing.T) {
	c, q := dialPipe(t)
	events, _ := c.Subscribe()
	pending := goExecute(context.Background(), c, "query-pending", nil)
	q.next()
	q.conn.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the peer closed")
	}
	if !errors.Is(c.Err(), io.EOF) {
		t.Errorf("Err = %v, want io.EOF", c.Err())
	}
	if r := wait(t, pending); !errors.Is(r.err, ErrClosed) {
		t.Errorf("pending Execute = %v, want ErrClosed", r.err)
	}
	err := c.Execute(context.Background(), "query-status", nil, nil)
	if !errors.Is(err, ErrClosed) || !strings.HasPrefix(err.Error(), "qmp query-status: ") {
		t.Errorf("Execute after end = %v, want ErrClosed", err)
	}
	if _, ok := <-events; ok {
		t.Error("subscription not closed at the end")
	}
	late, unsubscribe := c.Subscribe()
	if _, ok := <-late; ok {
		t.Error("subscription after the end not closed")
	}
	unsubscribe()
}

func TestFramingClose(t *testing.T) {
	c, _ := dialPipe(t)
	if err := c.Err(); err != nil {
		t.Errorf("Err before the end = %v", err)
	}
	c.Close()
	<-c.Done()
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err after Close = %v", c.Err())
	}
	if err := c.Execute(context.Background(), "query-status", nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Execute after Close = %v", err)
	}
	c.Close() // idempotent
}

func TestHandshakeTimeout(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := newClient(ctx, cli) // the server never greets
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 10*time.Second { // the greeting never comes
		t.Errorf("took %v", d)
	}
}

func TestHandshakeRejectsNonQMP(t *testing.T) {
	cli, srv := net.Pipe()
	defer srv.Close()
	go io.WriteString(srv, `{"hello": 1}`+"\n")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := newClient(ctx, cli); err == nil || !strings.Contains(err.Error(), "greeting") {
		t.Fatalf("err = %v, want a greeting error", err)
	}
}
