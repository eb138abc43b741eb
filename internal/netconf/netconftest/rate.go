package netconftest

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// MeasureRate offers frames of size bytes from from to to's MAC at
// offered bits per second for d, and returns the rate at which they
// reached to (bits of whole frames, no FCS, per second, from the first
// frame received to the last).
func MeasureRate(t testing.TB, from, to *Tap, size int, offered float64, d time.Duration) float64 {
	t.Helper()
	if len(from.MAC) != 6 || len(to.MAC) != 6 {
		t.Fatal("MeasureRate needs the taps of NICs (with MACs)")
	}
	frame := NewFrame(size).From(from.MAC).To(to.MAC)
	type result struct {
		bytes       int
		first, last time.Time
		err         error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		buf := make([]byte, 65536)
		for {
			n, err := to.f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					r.err = err
				}
				done <- r
				return
			}
			if !bytes.Contains(buf[:n], frame.Token) {
				continue
			}
			now := time.Now()
			if r.bytes == 0 {
				r.first = now
			}
			r.bytes += n
			r.last = now
		}
	}()
	start := time.Now()
	sent := 0
	for time.Since(start) < d {
		// Pace the offer: write what is due by now, then let a
		// millisecond pass.
		due := int(time.Since(start).Seconds() * offered / 8 / float64(size))
		for ; sent < due; sent++ {
			if _, err := from.f.Write(frame.Bytes); err != nil && !errors.Is(err, unix.EIO) && !errors.Is(err, unix.ENOBUFS) {
				t.Fatalf("write into %s: %v", from, err)
			}
		}
		time.Sleep(time.Millisecond)
	}
	// What is queued drains for a while; then the reader stops.
	_ = to.f.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	r := <-done
	_ = to.f.SetReadDeadline(time.Time{})
	if r.err != nil {
		t.Fatalf("read %s: %v", to, r.err)
	}
	span := r.last.Sub(r.first).Seconds()
	if r.bytes == 0 || span <= 0 {
		t.Fatalf("%d frames of %d bytes offered from %s at %.0f bit/s: %d bytes reached %s", sent, size, from, offered, r.bytes, to)
	}
	rate := float64(r.bytes*8) / span
	t.Logf("%s -> %s: offered %.1f Mbit/s for %v, got %.2f Mbit/s (%d of %d frames)", from, to, offered/1e6, d, rate/1e6, r.bytes/size, sent)
	return rate
}
