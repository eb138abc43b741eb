package policy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/testenv"
)

// lab is a fresh network namespace with a bridge br0, torn down with the
// test: what a host looks like to the policy package.
type lab struct {
	t  *testing.T
	ns netns.NsHandle
	h  *netlink.Handle
	br netlink.Link
}

func newLab(t *testing.T) *lab {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, taps, nftables and tc")
	l := &lab{t: t, ns: newNS(t)}
	h, err := netlink.NewHandleAt(l.ns)
	if err != nil {
		t.Fatalf("rtnetlink in the test namespace: %v", err)
	}
	t.Cleanup(h.Close)
	l.h = h
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
	if err := h.LinkAdd(br); err != nil {
		t.Fatalf("add bridge br0: %v", err)
	}
	if err := h.LinkSetUp(br); err != nil {
		t.Fatalf("set br0 up: %v", err)
	}
	l.br = br
	return l
}

// newNS makes a network namespace without moving the test into it.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("get the current network namespace: %v", err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("make a network namespace: %v", err)
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked and dies with the test's goroutine
		// rather than run other goroutines in the wrong namespace.
		t.Fatalf("return to the original network namespace: %v", err)
	}
	runtime.UnlockOSThread()
	t.Cleanup(func() { ns.Close() })
	return ns
}

// inNS runs f on a thread in the lab's namespace.
func (l *lab) inNS(f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(l.ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, err) // thread stays locked, see newNS
	}
	runtime.UnlockOSThread()
	return ferr
}

// vm is the VM side of a tap: writing sends a frame into the bridge from
// the tap, reading receives what the bridge sends to the tap.
type vm struct {
	t   *testing.T
	tap string
	mac net.HardwareAddr
	f   *os.File
}

// addVM makes tap name on br0, opened as a VM would (IFF_TAP|IFF_NO_PI),
// for a NIC with mac.
func (l *lab) addVM(name, mac string) *vm {
	l.t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		l.t.Fatal(err)
	}
	var fd int
	err = l.inNS(func() error {
		var err error
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return err
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("open tap %s: %v", name, err)
	}
	v := &vm{t: l.t, tap: name, mac: hw, f: os.NewFile(uintptr(fd), name)}
	l.t.Cleanup(func() { v.f.Close() })
	link, err := l.h.LinkByName(name)
	if err != nil {
		l.t.Fatalf("find tap %s: %v", name, err)
	}
	if err := l.h.LinkSetMaster(link, l.br); err != nil {
		l.t.Fatalf("attach %s to br0: %v", name, err)
	}
	if err := l.h.LinkSetUp(link); err != nil {
		l.t.Fatalf("set %s up: %v", name, err)
	}
	return v
}

func (v *vm) port(p Port) Port {
	p.Tap, p.MAC = v.tap, v.mac
	return p
}

// Test frames carry this EtherType (IEEE local experimental) and a tag,
// so that the kernel's own traffic (IPv6 DAD, MLD) is told apart.
const testEtherType = 0x88b5

var testMagic = []byte("vdc-policy-test:")

// frame is an Ethernet frame from src to dst carrying tag, padded to size.
func frame(dst, src net.HardwareAddr, tag string, size int) []byte {
	b := make([]byte, 0, max(size, 64))
	b = append(b, dst...)
	b = append(b, src...)
	b = binary.BigEndian.AppendUint16(b, testEtherType)
	b = append(b, testMagic...)
	b = append(b, tag...)
	b = append(b, 0)
	for len(b) < size {
		b = append(b, 0)
	}
	return b
}

// tagOf is the tag of a test frame, "" for anything else.
func tagOf(b []byte) string {
	if len(b) < 14 || binary.BigEndian.Uint16(b[12:14]) != testEtherType || !bytes.HasPrefix(b[14:], testMagic) {
		return ""
	}
	rest := b[14+len(testMagic):]
	if i := bytes.IndexByte(rest, 0); i >= 0 {
		rest = rest[:i]
	}
	return string(rest)
}

func (v *vm) send(b []byte) {
	v.t.Helper()
	if _, err := v.f.Write(b); err != nil {
		v.t.Fatalf("send a frame from %s: %v", v.tap, err)
	}
}

// sendTo sends a tagged test frame from the VM's own MAC (or src) to dst.
func (v *vm) sendTo(dst net.HardwareAddr, tag string) { v.send(frame(dst, v.mac, tag, 64)) }

// receiveUntil reads what reaches the VM until a frame matches stop, and
// returns the test tags seen before it; it fails the test if none does
// within five seconds.
func (v *vm) receiveUntil(stop func(frame []byte) bool) []string {
	v.t.Helper()
	if err := v.f.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		v.t.Fatal(err)
	}
	var seen []string
	buf := make([]byte, 65536)
	for {
		n, err := v.f.Read(buf)
		if err != nil {
			v.t.Fatalf("%s: waiting for a frame (seen before it: %q): %v", v.tap, seen, err)
		}
		if stop(buf[:n]) {
			return seen
		}
		if tag := tagOf(buf[:n]); tag != "" {
			seen = append(seen, tag)
		}
	}
}

// receiveTag reads until the test frame tagged tag and returns the tags
// seen before it.
func (v *vm) receiveTag(tag string) []string {
	v.t.Helper()
	return v.receiveUntil(func(b []byte) bool { return tagOf(b) == tag })
}

// converge runs Converge in the lab and fails the test on an error.
func (l *lab) converge(ports ...Port) {
	l.t.Helper()
	if err := Converge(context.Background(), l.ns, ports); err != nil {
		l.t.Fatalf("converge %d ports: %v", len(ports), err)
	}
}

func contains(tags []string, tag string) bool {
	for _, s := range tags {
		if s == tag {
			return true
		}
	}
	return false
}

func mustMAC(s string) net.HardwareAddr {
	hw, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return hw
}

func joinTags(tags []string) string { return strings.Join(tags, ",") }
