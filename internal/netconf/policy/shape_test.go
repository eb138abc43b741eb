package policy

import (
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/netconf"
)

// TestShapingLimitsBothDirections sends through a shaped port at twice its
// limits, each way, and measures what comes out: the shaper, not the
// sender, must set the rate, within 15 %.
func TestShapingLimitsBothDirections(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	l.converge(a.port(Port{Policy: shaped}), b.port(Port{}))

	in := measure(t, b, a, shaped.In.AverageBitsPerSec)
	t.Logf("in (towards tapa's VM): limit %.1f Mbit/s, measured %.2f Mbit/s", float64(shaped.In.AverageBitsPerSec)/1e6, in/1e6)
	within(t, "in", in, shaped.In.AverageBitsPerSec)

	out := measure(t, a, b, shaped.Out.AverageBitsPerSec)
	t.Logf("out (from tapa's VM): limit %.1f Mbit/s, measured %.2f Mbit/s", float64(shaped.Out.AverageBitsPerSec)/1e6, out/1e6)
	within(t, "out", out, shaped.Out.AverageBitsPerSec)
}

// TestShapeChangesInPlace changes a port's limits and checks the new rate
// holds on the same qdiscs (their byte counters keep counting) and ifb.
func TestShapeChangesInPlace(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	l.converge(a.port(Port{Policy: shaped}), b.port(Port{}))
	ifb := l.index(IfbName("tapa"))
	for range 10 {
		b.sendTo(a.mac, "warm")
		a.sendTo(b.mac, "warm")
	}
	a.receiveTag("warm")
	b.receiveTag("warm")
	inBytes, outBytes := l.sentBytes("tapa"), l.sentBytes(IfbName("tapa"))
	if inBytes == 0 || outBytes == 0 {
		t.Fatalf("shapers counted no traffic: in %d, out %d bytes", inBytes, outBytes)
	}

	slower := netconf.Policy{
		In:  netconf.Shape{AverageBitsPerSec: 12e6},
		Out: netconf.Shape{AverageBitsPerSec: 16e6, PeakBitsPerSec: 32e6},
	}
	l.converge(a.port(Port{Policy: slower}), b.port(Port{}))
	if got := l.index(IfbName("tapa")); got != ifb {
		t.Errorf("ifb of tapa was made again (ifindex %d, was %d)", got, ifb)
	}
	if q := l.rootTbf("tapa"); q == nil || q.Rate != 12e6/8 || q.Peakrate != 0 {
		t.Errorf("tapa's tbf after the change: %+v, want rate %d bytes/s and no peak", q, uint64(12e6/8))
	}
	if got := l.sentBytes("tapa"); got < inBytes {
		t.Errorf("tapa's tbf was replaced, not changed: its byte counter went from %d to %d", inBytes, got)
	}
	if got := l.sentBytes(IfbName("tapa")); got < outBytes {
		t.Errorf("the ifb's tbf was replaced, not changed: its byte counter went from %d to %d", outBytes, got)
	}
	in := measure(t, b, a, slower.In.AverageBitsPerSec)
	t.Logf("in after the change: limit 12 Mbit/s, measured %.2f Mbit/s", in/1e6)
	within(t, "in after change", in, slower.In.AverageBitsPerSec)
	out := measure(t, a, b, slower.Out.AverageBitsPerSec)
	t.Logf("out after the change: limit 16 Mbit/s (peak 32), measured %.2f Mbit/s", out/1e6)
	within(t, "out after change", out, slower.Out.AverageBitsPerSec)
}

func within(t *testing.T, what string, got float64, limit uint64) {
	t.Helper()
	if dev := math.Abs(got-float64(limit)) / float64(limit); dev > 0.15 {
		t.Errorf("%s: measured %.2f Mbit/s for a limit of %.2f Mbit/s (%.0f %% off)", what, got/1e6, float64(limit)/1e6, dev*100)
	}
}

// measure sends full-size frames from src to dst at twice limit for
// about two seconds and returns the rate at which they reach dst (bit/s,
// Ethernet frames without FCS, as tc counts them). The window starts once
// the first burst's worth has arrived, so the bucket's initial credit and
// the queue filling do not count.
func measure(t *testing.T, src, dst *vm, limit uint64) float64 {
	t.Helper()
	const size = 1514
	tag := "load-" + src.tap
	var got atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, err := dst.f.Read(buf)
			if err != nil {
				return // the deadline set below ends the reader
			}
			if tagOf(buf[:n]) == tag {
				got.Add(int64(n))
			}
		}
	}()
	go func() {
		defer wg.Done()
		f := frame(dst.mac, src.mac, tag, size)
		perMs := float64(2*limit) / 8 / 1000 / size
		start, sent := time.Now(), 0
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for due := int(float64(time.Since(start).Milliseconds()+1) * perMs); sent < due; sent++ {
				if _, err := src.f.Write(f); err != nil {
					t.Errorf("send from %s: %v", src.tap, err)
					return
				}
			}
		}
	}()
	defer func() {
		close(stop)
		_ = dst.f.SetReadDeadline(time.Now())
		wg.Wait()
		_ = dst.f.SetReadDeadline(time.Time{})
	}()
	if err := dst.f.SetReadDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}

	// Past the initial burst: the bucket is empty and the queue full.
	warm := int64(1 << 20)
	deadline := time.Now().Add(10 * time.Second)
	for got.Load() < warm {
		if time.Now().After(deadline) {
			t.Fatalf("%s -> %s: only %d bytes arrived in 10 s", src.tap, dst.tap, got.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	b0, t0 := got.Load(), time.Now()
	<-time.After(2 * time.Second)
	b1, t1 := got.Load(), time.Now()
	return float64(b1-b0) * 8 / t1.Sub(t0).Seconds()
}

// sentBytes is what the tbf vdc keeps at dev's root has sent.
func (l *lab) sentBytes(dev string) uint64 {
	l.t.Helper()
	q := l.rootTbf(dev)
	if q == nil || q.Statistics == nil || q.Statistics.Basic == nil {
		l.t.Fatalf("%s: no tbf with statistics at the root", dev)
	}
	return q.Statistics.Basic.Bytes
}
