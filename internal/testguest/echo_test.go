package testguest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// serveEcho accepts one connection on loopback and hands it to serve.
func serveEcho(t *testing.T, serve func(net.Conn)) net.Conn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		serve(c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// lines calls answer for every line the client sends, with what to
// write back.
func lines(answer func(n int, line string) string) func(net.Conn) {
	return func(c net.Conn) {
		sc := bufio.NewScanner(c)
		for n := 1; sc.Scan(); n++ {
			if _, err := io.WriteString(c, answer(n, sc.Text())); err != nil {
				return
			}
		}
	}
}

func TestEchoCountsEveryLineBack(t *testing.T) {
	c := serveEcho(t, func(c net.Conn) { io.Copy(c, c) })
	st, err := Echo{Count: 200}.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := EchoStats{Sent: 200, Received: 200}
	st.MaxGap = 0
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
}

func TestEchoCountsLostDuplicatedAndReordered(t *testing.T) {
	var held string
	c := serveEcho(t, lines(func(n int, line string) string {
		switch n {
		case 3: // lost
			return ""
		case 5: // answered twice
			return line + "\n" + line + "\n"
		case 7: // answered after 8
			held = line + "\n"
			return ""
		case 8:
			return line + "\n" + held
		}
		return line + "\n"
	}))
	start := time.Now()
	st, err := Echo{Count: 10, Interval: time.Millisecond, Drain: 300 * time.Millisecond}.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	want := EchoStats{Sent: 10, Received: 10, Lost: 1, Duplicated: 1, Reordered: 1}
	gap := st.MaxGap
	st.MaxGap = 0
	if st != want {
		t.Errorf("stats = %+v, want %+v", st, want)
	}
	// The lost line was waited for, the whole drain.
	if gap < 300*time.Millisecond || gap > time.Since(start) {
		t.Errorf("MaxGap = %v, want the drain (300ms) at least and at most the run (%v)", gap, time.Since(start))
	}
}

func TestEchoStopEndsSendingAndDrains(t *testing.T) {
	stop := make(chan struct{})
	c := serveEcho(t, lines(func(n int, line string) string {
		if n == 10 {
			close(stop)
		}
		return line + "\n"
	}))
	st, err := Echo{Interval: time.Millisecond, Stop: stop}.Run(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sent < 10 || st.Received != st.Sent || st.Lost != 0 {
		t.Errorf("stats = %+v, want at least 10 sent, all back", st)
	}
}

func TestEchoFailsWhenTheConnectionCloses(t *testing.T) {
	// Answers the first line, then hangs up.
	c := serveEcho(t, func(c net.Conn) {
		bufio.NewReader(c).ReadString('\n')
		io.WriteString(c, "1\n")
	})
	st, err := Echo{Count: 5, Interval: 10 * time.Millisecond}.Run(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "read answers") {
		t.Fatalf("Run over a connection the server closed = %+v, %v; want a read error", st, err)
	}
	if st.Received != 1 {
		t.Errorf("received %d answers before the close, want 1", st.Received)
	}
}

func TestEchoRejectsAnswersNeverSent(t *testing.T) {
	c := serveEcho(t, lines(func(n int, line string) string { return "99\n" }))
	if _, err := (Echo{Count: 3}).Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "never sent") {
		t.Fatalf("Run = %v, want an error about an answer never sent", err)
	}
}

func TestEchoEndsWithItsContext(t *testing.T) {
	c := serveEcho(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := Echo{Interval: time.Millisecond, Drain: time.Hour}.Run(ctx, c)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run after cancel = %v, want context.Canceled", err)
	}
}
