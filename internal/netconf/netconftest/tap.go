package netconftest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tap is a test's end of a tap device, as QEMU would hold it: frames
// written here leave the tap towards its bridge (what the guest sends),
// frames read are what the network delivers to the guest.
type Tap struct {
	Name string
	Host *Host
	// MAC is the guest's address on this tap when the tap is a NIC's of
	// the suite (see NIC); frames written here then come from it, as a
	// guest's do. nil: each frame from a random address.
	MAC net.HardwareAddr
	f   *os.File
}

// OpenTap attaches to the existing tap name on the host (TUNSETIFF with
// IFF_TAP|IFF_NO_PI, as QEMU's -netdev tap,ifname=name does), so it has
// carrier, and closes it at the end of the test.
func (h *Host) OpenTap(t testing.TB, name string) *Tap {
	t.Helper()
	var f *os.File
	err := inNS(h.NS, func() error {
		var err error
		f, err = openTun(name, unix.IFF_TAP|unix.IFF_NO_PI)
		return err
	})
	if err != nil {
		t.Fatalf("open tap %s on %s: %v", name, h.Name, err)
	}
	t.Cleanup(func() { f.Close() })
	return &Tap{Name: name, Host: h, MAC: nicMAC(name), f: f}
}

func (tp *Tap) String() string { return tp.Host.Name + "/" + tp.Name }

// Close detaches from the tap (as QEMU exiting would).
func (tp *Tap) Close() error { return tp.f.Close() }

func openTun(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	req, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	req.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking before os.NewFile: reads then honour deadlines.
	return os.NewFile(uintptr(fd), "tap "+name), nil
}

// Frame is a broadcast ARP request from a random MAC, padded with a
// random token that tells it from every other frame on the wire; size
// is its length without FCS (at least 60).
type Frame struct {
	Bytes []byte
	Token []byte
}

// NewFrame makes a frame of size bytes (60 if smaller).
func NewFrame(size int) Frame {
	size = max(size, 60)
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	src := make([]byte, 6)
	_, _ = rand.Read(src)
	src[0] = src[0]&^1 | 2
	b := make([]byte, 0, size)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, 0x0806) // ARP
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 1)        // Ethernet/IPv4 request
	b = append(b, src...)
	b = append(b, 198, 51, 100, 1) // sender 198.51.100.1
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, 198, 51, 100, 2) // target
	b = append(b, token...)
	for len(b) < size {
		b = append(b, byte(len(b)))
	}
	return Frame{Bytes: b, Token: token}
}

// From makes the frame come from mac: its Ethernet source and ARP
// sender hardware address.
func (f Frame) From(mac net.HardwareAddr) Frame {
	copy(f.Bytes[6:12], mac)
	copy(f.Bytes[22:28], mac)
	return f
}

// To makes the frame unicast to mac.
func (f Frame) To(mac net.HardwareAddr) Frame {
	copy(f.Bytes[0:6], mac)
	return f
}

// watch reads tp until stop, and reports which of its tokens arrived in
// a frame (seen[i] is closed at the first holding tokens[i]).
type watch struct {
	tap    *Tap
	tokens [][]byte
	seen   []chan struct{}
	done   chan struct{}
	err    error
	once   []sync.Once
}

func (tp *Tap) watch(tokens ...[]byte) *watch {
	w := &watch{tap: tp, tokens: tokens, done: make(chan struct{}), once: make([]sync.Once, len(tokens))}
	for range tokens {
		w.seen = append(w.seen, make(chan struct{}))
	}
	go func() {
		defer close(w.done)
		buf := make([]byte, 65536)
		for {
			n, err := tp.f.Read(buf)
			if err != nil {
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					w.err = err
				}
				return
			}
			for i, token := range w.tokens {
				if bytes.Contains(buf[:n], token) {
					w.once[i].Do(func() { close(w.seen[i]) })
				}
			}
		}
	}()
	return w
}

// got says whether the first token arrived; gotToken whether token i.
func (w *watch) got() bool { return w.gotToken(0) }

func (w *watch) gotToken(i int) bool {
	select {
	case <-w.seen[i]:
		return true
	default:
		return false
	}
}

// stop ends the read and clears the deadline for the next watch.
func (w *watch) stop() error {
	_ = w.tap.f.SetReadDeadline(time.Now())
	<-w.done
	_ = w.tap.f.SetReadDeadline(time.Time{})
	return w.err
}

// Timeouts of Deliver. Carrier and bridge port state follow a tap's
// opening asynchronously (linkwatch), so the frame is sent again until
// it arrives or deliverTimeout passes; a tap that must not get it is
// watched for quietWindow more once the wanted ones have it.
const (
	deliverTimeout = 15 * time.Second
	resendEvery    = 100 * time.Millisecond
	quietWindow    = 750 * time.Millisecond
)

// Deliver writes a fresh frame of size bytes into from, again every
// resendEvery, until every tap in to has read it; then it checks that
// no tap in not read it, even quietWindow later. to must not be empty:
// it is what proves the frame was on its way, so a tap in not that saw
// nothing did so while the frame was being flooded. The frame is a
// broadcast from from's MAC (a random one when from has none).
func Deliver(t testing.TB, size int, from *Tap, to, not []*Tap) {
	t.Helper()
	frame := NewFrame(size)
	if len(from.MAC) == 6 {
		frame = frame.From(from.MAC)
	}
	DeliverFrame(t, frame, from, to, not)
}

// DeliverFrame is Deliver with a frame of the caller's.
func DeliverFrame(t testing.TB, frame Frame, from *Tap, to, not []*Tap) {
	t.Helper()
	if len(to) == 0 {
		t.Fatal("Deliver needs a tap that gets the frame")
	}
	exchange(t, []Frame{frame}, from, to, not, nil)
}

// Blocked writes bad and then witness into from, again and again, until
// every tap in at has read witness; then it checks that none of them
// read bad, even quietWindow later. The witness, written after bad on
// the same path, is what proves that bad had its chance to arrive.
func Blocked(t testing.TB, bad, witness Frame, from *Tap, at []*Tap) {
	t.Helper()
	if len(at) == 0 {
		t.Fatal("Blocked needs a tap that gets the witness")
	}
	exchange(t, []Frame{witness, bad}, from, at, nil, at)
}

// exchange writes frames[1:] and then frames[0] into from until every
// tap in to has frames[0]; then, after quietWindow, checks that no tap
// in not got frames[0] and no tap in blocked got frames[1:].
func exchange(t testing.TB, frames []Frame, from *Tap, to, not, blocked []*Tap) {
	t.Helper()
	tokens := make([][]byte, len(frames))
	for i, f := range frames {
		tokens[i] = f.Token
	}
	watches := map[*Tap]*watch{}
	for _, tp := range append(append(append([]*Tap{}, to...), not...), blocked...) {
		if watches[tp] == nil {
			watches[tp] = tp.watch(tokens...)
		}
	}
	var wanted []*watch
	for _, tp := range to {
		wanted = append(wanted, watches[tp])
	}
	stopAll := func() {
		for _, w := range watches {
			if err := w.stop(); err != nil {
				t.Errorf("read %s: %v", w.tap, err)
			}
		}
	}
	deadline := time.Now().Add(deliverTimeout)
	tick := time.NewTicker(resendEvery)
	defer tick.Stop()
	order := append(append([]Frame{}, frames[1:]...), frames[0])
	for !allGot(wanted) {
		if time.Now().After(deadline) {
			stopAll()
			t.Fatalf("a %d-byte frame written into %s did not reach %v within %v", len(frames[0].Bytes), from, missing(wanted), deliverTimeout)
		}
		for _, f := range order {
			if _, err := from.f.Write(f.Bytes); err != nil && !errors.Is(err, unix.EIO) {
				stopAll()
				t.Fatalf("write a %d-byte frame into %s: %v", len(f.Bytes), from, err)
			}
		}
		<-tick.C
	}
	quiet := time.NewTimer(quietWindow)
	<-quiet.C
	stopAll()
	for _, tp := range not {
		if watches[tp].got() {
			t.Errorf("a frame written into %s reached %s, which must not see it", from, tp)
		}
	}
	for _, tp := range blocked {
		for i := 1; i < len(frames); i++ {
			if watches[tp].gotToken(i) {
				t.Errorf("a frame written into %s (from %s to %s) reached %s, which must not see it",
					from, net.HardwareAddr(frames[i].Bytes[6:12]), net.HardwareAddr(frames[i].Bytes[0:6]), tp)
			}
		}
	}
}

func allGot(ws []*watch) bool { return len(missing(ws)) == 0 }

func missing(ws []*watch) []string {
	var out []string
	for _, w := range ws {
		if !w.got() {
			out = append(out, w.tap.String())
		}
	}
	return out
}

// Copies writes frame into from once and counts how many copies of it
// each tap of at reads in the next quietWindow*2 (a path that loops
// delivers it again and again).
func Copies(t testing.TB, frame Frame, from *Tap, at []*Tap) map[*Tap]int {
	t.Helper()
	var mu sync.Mutex
	got := map[*Tap]int{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * quietWindow)
	for _, tp := range at {
		_ = tp.f.SetReadDeadline(deadline)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 65536)
			for {
				n, err := tp.f.Read(buf)
				if err != nil {
					return
				}
				if bytes.Contains(buf[:n], frame.Token) {
					mu.Lock()
					got[tp]++
					mu.Unlock()
				}
			}
		}()
	}
	if _, err := from.f.Write(frame.Bytes); err != nil {
		t.Fatalf("write into %s: %v", from, err)
	}
	wg.Wait()
	for _, tp := range at {
		_ = tp.f.SetReadDeadline(time.Time{})
	}
	return got
}
