// Package tap makes the persistent tap devices of VM NICs, shared by the
// netconf backends: a tap is made by opening /dev/net/tun in the
// backend's network namespace, set up while only that descriptor holds it
// (so an agent killed half-way leaves nothing), and only then made
// persistent, so that QEMU opens it by name and it outlives the agent.
package tap

import (
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InNS runs fn on an OS thread switched into ns, for the calls netlink
// cannot aim at a namespace (opening /dev/net/tun binds the tap to the
// opener's namespace; a forked child inherits the forking thread's). The
// thread goes back to its namespace after; if it cannot, it stays locked
// and dies with the goroutine.
func InNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get the current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", ns, err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is in the wrong namespace: leave it locked so the
		// runtime ends it with this goroutine instead of reusing it.
		return fmt.Errorf("return to network namespace %s: %w", orig, err)
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Flags are the flags a tap is made with: a tap (Ethernet frames)
// without packet information. vnet_hdr is on, so QEMU's virtio-net can
// offload checksums and segmentation; the flags are a default, as every
// opener's TUNSETIFF sets its own (QEMU asks for vnet_hdr when the
// kernel offers it, the conformance suite does not). No multi_queue:
// QEMU opens a single-queue tap by name with -netdev
// tap,ifname=NAME,script=no,downscript=no.
const Flags = unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// Create makes a persistent tap named name in ns: it outlives the file
// descriptor that made it (and the agent), until deleted. setup runs
// while the new tap is not persistent yet, held only by the descriptor:
// if the process dies before the end, the tap goes too.
func Create(ns netns.NsHandle, name string, setup func() error) error {
	return InNS(ns, func() error {
		f, err := Open(name, Flags|unix.IFF_TUN_EXCL)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := setup(); err != nil {
			return err
		}
		if err := unix.IoctlSetInt(int(f.Fd()), unix.TUNSETPERSIST, 1); err != nil {
			return fmt.Errorf("make tap %s persistent: %w", name, err)
		}
		return nil
	})
}

// Open opens /dev/net/tun and attaches it to the tun/tap device name
// (making it when missing) with flags. The device belongs to the
// namespace of the calling thread.
func Open(name string, flags uint16) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun for %s: %w", name, err)
	}
	req, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("tap name %q: %w", name, err)
	}
	req.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, req); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("attach to tap %s (TUNSETIFF): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
