package testguest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
)

// EchoPort is the guest's TCP line echo (IPv4 and IPv6): every byte a
// client sends comes back on the same connection.
const EchoPort = 7777

// Echo is a counter over a connection to the guest's echo service: it
// sends numbered lines ("1\n", "2\n", ...) and checks each comes back
// once, so a test counts what a network change (a live migration, a NIC
// moved to another port group) lost, duplicated or held up. The counter
// lives here, in the client, not in the guest: its clock is not the
// guest's (which a migration pauses), and one echo serves any number of
// counters at once.
type Echo struct {
	// Interval between two lines (0: back to back).
	Interval time.Duration
	// Count is how many lines to send; 0 sends until Stop is closed.
	Count int
	// Stop, when closed, ends the sending early.
	Stop <-chan struct{}
	// Drain is how long to wait, after the last line, for the answers
	// still due (default 10s); the ones that never come are Lost.
	Drain time.Duration
}

// EchoStats is what one Echo run saw.
type EchoStats struct {
	Sent, Received int // lines sent; answers read, duplicates included
	Lost           int // lines sent that never came back
	Duplicated     int // answers to a line already answered
	Reordered      int // answers that came after the answer to a later line
	// MaxGap is the longest time without an answer while one was due:
	// from the first line to the first answer, between two answers, or
	// from the last answer to the end of the run when lines were lost.
	MaxGap time.Duration
}

// Run sends lines over conn (a connection to EchoPort) and reads their
// answers until all came back or Drain has passed since the last line. An
// error means the connection failed or ctx ended; the stats say how far
// it got. Run sets conn's deadlines and does not close it.
func (e Echo) Run(ctx context.Context, conn net.Conn) (EchoStats, error) {
	drain := e.Drain
	if drain == 0 {
		drain = 10 * time.Second
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	var (
		sent, unique atomic.Int64
		done         = make(chan struct{}) // closed once sent is final
		writeErr     error                 // valid once done is closed
	)
	started := time.Now()
	go func() {
		writeErr = e.send(ctx, conn, &sent)
		close(done)
		if ctx.Err() != nil || unique.Load() == sent.Load() {
			conn.SetReadDeadline(time.Now()) // nothing to wait for: wake the reader
		} else {
			conn.SetReadDeadline(time.Now().Add(drain))
		}
	}()
	st, err := e.read(conn, &sent, &unique, done, started)
	<-done
	st.Sent = int(sent.Load())
	st.Lost = st.Sent - int(unique.Load())
	if ctx.Err() != nil {
		return st, fmt.Errorf("echo counter: %w", ctx.Err())
	}
	if err == nil && writeErr != nil {
		err = writeErr
	}
	return st, err
}

// send writes the numbered lines, counting them in sent.
func (e Echo) send(ctx context.Context, conn net.Conn, sent *atomic.Int64) error {
	var tick <-chan time.Time
	if e.Interval > 0 {
		t := time.NewTicker(e.Interval)
		defer t.Stop()
		tick = t.C
	}
	for n := 1; e.Count == 0 || n <= e.Count; n++ {
		if n > 1 && tick != nil {
			select {
			case <-tick:
			case <-e.Stop:
				return nil
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-e.Stop:
			return nil
		case <-ctx.Done():
			return nil
		default:
		}
		// Counted first: the answer can be read before Write returns.
		sent.Store(int64(n))
		conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if _, err := conn.Write([]byte(strconv.Itoa(n) + "\n")); err != nil {
			sent.Store(int64(n - 1))
			return fmt.Errorf("echo counter: send line %d to %s: %w", n, conn.RemoteAddr(), err)
		}
	}
	return nil
}

// read counts the answers until every line sent came back (once done is
// closed) or the connection fails, the drain deadline included.
func (e Echo) read(conn net.Conn, sent, unique *atomic.Int64, done <-chan struct{}, started time.Time) (EchoStats, error) {
	var st EchoStats
	seen := map[int]bool{}
	highest := 0
	last := started
	finished := func() bool { return isDone(done) && unique.Load() == sent.Load() }
	sc := bufio.NewScanner(conn)
	for !finished() {
		if !sc.Scan() {
			err := sc.Err()
			// Past the drain deadline, the lines not back are lost.
			if errors.Is(err, os.ErrDeadlineExceeded) && isDone(done) {
				if !finished() { // the wait for them counts
					st.MaxGap = max(st.MaxGap, time.Since(last))
				}
				return st, nil
			}
			if err == nil {
				err = errors.New("connection closed")
			}
			return st, fmt.Errorf("echo counter: read answers from %s: %w", conn.RemoteAddr(), err)
		}
		now := time.Now()
		n, err := strconv.Atoi(sc.Text())
		if err != nil || n < 1 || int64(n) > sent.Load() {
			return st, fmt.Errorf("echo counter: %s answered %q, which was never sent", conn.RemoteAddr(), sc.Text())
		}
		st.Received++
		st.MaxGap = max(st.MaxGap, now.Sub(last))
		last = now
		switch {
		case seen[n]:
			st.Duplicated++
			continue
		case n < highest:
			st.Reordered++
		}
		seen[n] = true
		highest = max(highest, n)
		unique.Add(1)
	}
	return st, nil
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
