package testguest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/testenv"
)

// guestLab is a network namespace of this test's own with Linux bridges
// and taps for QEMU, and dnsmasq answering DHCP and sending IPv6 router
// advertisements on some of the bridges. It plays the host's side of a
// VM's networks, with nothing of the machine's own network involved.
type guestLab struct {
	t   *testing.T
	ns  string
	dir string
}

func newGuestLab(t *testing.T) *guestLab {
	t.Helper()
	testenv.NeedRoot(t, "network namespaces, bridges and taps")
	testenv.NeedTools(t, "iproute2 iputils-ping dnsmasq-base", "ip", "ping", "dnsmasq")
	l := &guestLab{t: t, ns: fmt.Sprintf("vdctg-%04x", rand.IntN(0x10000)), dir: t.TempDir()}
	l.run("ip", "netns", "add", l.ns)
	t.Cleanup(func() {
		// QEMU and dnsmasq are killed by their own cleanups; anything
		// else left in the namespace goes with it.
		if pids, err := exec.Command("ip", "netns", "pids", l.ns).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				var pid int
				fmt.Sscan(p, &pid)
				if pid != os.Getpid() { // never this test, should a thread of it be there
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", l.ns).CombinedOutput(); err != nil {
			t.Errorf("remove network namespace %s: %v: %s", l.ns, err, out)
		}
	})
	l.run("ip", "-n", l.ns, "link", "set", "lo", "up")
	return l
}

func (l *guestLab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// bridge makes a bridge with the given addresses (CIDR; v6 may be "").
// Multicast snooping is off: with no querier it could hold back the IPv6
// neighbour discovery this lab tests.
func (l *guestLab) bridge(name, v4, v6 string) {
	l.t.Helper()
	l.run("ip", "-n", l.ns, "link", "add", name, "type", "bridge", "mcast_snooping", "0")
	l.run("ip", "-n", l.ns, "addr", "add", v4, "dev", name)
	if v6 != "" {
		l.run("ip", "-n", l.ns, "addr", "add", v6, "dev", name, "nodad")
	}
	l.run("ip", "-n", l.ns, "link", "set", name, "up")
}

// tap makes a tap device on a bridge, for QEMU's -netdev tap,ifname=.
func (l *guestLab) tap(name, bridge string) {
	l.t.Helper()
	l.run("ip", "-n", l.ns, "tuntap", "add", "dev", name, "mode", "tap")
	l.run("ip", "-n", l.ns, "link", "set", name, "master", bridge, "up")
}

// dhcp starts dnsmasq on the bridges: DHCPv4 from .100 to .199 of each
// bridge's /24, and router advertisements of each one's IPv6 /64 (SLAAC,
// no DHCPv6). DNS is off. No ping before an offer (--no-ping): nothing
// else is on these networks, and dnsmasq's check that an address is free
// held every first lease back by about three seconds. It waits until
// dnsmasq serves.
func (l *guestLab) dhcp(ctx context.Context, nets map[string][2]string) {
	t := l.t
	t.Helper()
	args := []string{"netns", "exec", l.ns, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
		"--no-resolv", "--no-hosts", "--port=0", "--bind-interfaces", "--except-interface=lo",
		"--enable-ra", "--no-ping", "--log-dhcp", "--log-facility=-",
		"--dhcp-leasefile=" + filepath.Join(l.dir, "leases"), "--pid-file=" + filepath.Join(l.dir, "dnsmasq.pid")}
	for br, n := range nets {
		v4 := strings.TrimSuffix(n[0], ".0/24")
		args = append(args, "--interface="+br,
			fmt.Sprintf("--dhcp-range=%s.100,%s.199,255.255.255.0,1h", v4, v4),
			fmt.Sprintf("--dhcp-range=%s,ra-only,64", strings.TrimSuffix(n[1], "/64")))
	}
	logPath := filepath.Join(l.dir, "dnsmasq.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dnsmasq: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("dnsmasq log:\n%s", b)
		}
	})
	for {
		if b, _ := os.ReadFile(logPath); strings.Count(string(b), "DHCP, IP range") == len(nets) {
			return
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("dnsmasq exited: %s", b)
		case <-ctx.Done():
			t.Fatalf("dnsmasq not serving: %v", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exec runs a command in the namespace and returns its combined output.
func (l *guestLab) exec(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), l.ns, err, out)
	}
	return string(out), nil
}

// dial connects from inside the namespace: the socket is made on a
// thread moved into the namespace, and keeps it. The thread is moved back
// after; should that fail it stays locked, and so ends with its goroutine.
func (l *guestLab) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		c, err := l.dialHere(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("connect to %s from %s: %w", addr, l.ns, r.err)
	}
	return r.c, nil
}

// dialHere runs on a locked thread; it unlocks it once it is back in its
// own namespace.
func (l *guestLab) dialHere(ctx context.Context, network, addr string) (net.Conn, error) {
	own, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, err
	}
	defer own.Close()
	lab, err := os.Open("/run/netns/" + l.ns)
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	if err := unix.Setns(int(lab.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter network namespace %s: %w", l.ns, err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return c, err
}
