package bridge

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/testenv"
)

func newTestBackend(t *testing.T, ns netns.NsHandle, policy netconf.PolicyEnforcer) *Backend {
	t.Helper()
	b, err := New(Options{NetNS: ns, Logger: slog.New(slog.DiscardHandler), Policy: policy})
	if err != nil {
		t.Fatalf("new bridge backend: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// A tap is made persistent, single-queue, without packet information
// and with vnet_hdr as its default.
func TestTapFlags(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newTestBackend(t, h0.NS, nil)
	p := netconftest.NIC("vm-a", 0, "pg-x")
	netconftest.ConvergeClean(t, b, netconf.Host{
		Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))},
		Ports:    []netconf.Port{p},
	})
	l, err := h0.Handle().LinkByName(p.Tap)
	if err != nil {
		t.Fatal(err)
	}
	tap := l.(*netlink.Tuntap)
	switch {
	case tap.NonPersist:
		t.Error("tap is not persistent")
	case tap.Flags&netlink.TUNTAP_NO_PI == 0:
		t.Error("tap carries packet information (IFF_NO_PI off)")
	case tap.Flags&netlink.TUNTAP_VNET_HDR == 0:
		t.Error("tap made without vnet_hdr")
	case tap.Flags&netlink.TUNTAP_MULTI_QUEUE != 0:
		t.Error("tap is multi-queue")
	case tap.Attrs().Group != netconf.DeviceGroup:
		t.Errorf("tap in device group %d, want %d", tap.Attrs().Group, netconf.DeviceGroup)
	}
}

// A tap whose setup fails before it is made persistent does not stay:
// what an agent killed while making one leaves behind.
func TestTapNotPersistentUntilNamed(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	boom := errors.New("agent killed")
	var during bool
	err := createTap(h0.NS, "vtcrash0n0", func() error {
		_, err := h0.Handle().LinkByName("vtcrash0n0")
		during = err == nil
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("createTap: %v, want the setup's error", err)
	}
	if !during {
		t.Fatal("the tap did not exist while being set up")
	}
	if _, err := h0.Handle().LinkByName("vtcrash0n0"); err == nil {
		t.Fatal("a tap whose setup failed is still there")
	}
}

// QEMU opens the tap by name, as the agent will run it, and gets
// carrier and vnet_hdr on it.
func TestQEMUOpensTap(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86", "qemu-system-x86_64")
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newTestBackend(t, h0.NS, nil)
	p := netconftest.NIC("vm-q", 0, "pg-x")
	netconftest.ConvergeClean(t, b, netconf.Host{
		Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))},
		Ports:    []netconf.Port{p},
	})
	if carrier(t, h0, p.Tap) {
		t.Fatal("tap has carrier before anyone opened it")
	}
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S",
		"-netdev", "tap,id=n0,ifname="+p.Tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=n0,mac="+p.MAC.String())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	startIn(t, h0.NS, cmd)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for !carrier(t, h0, p.Tap) {
		if time.Now().After(deadline) {
			t.Fatalf("QEMU did not attach to tap %s within 20s; its output: %s", p.Tap, out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling an observable condition with a deadline
	}
	l, err := h0.Handle().LinkByName(p.Tap)
	if err != nil {
		t.Fatal(err)
	}
	if l.(*netlink.Tuntap).Flags&netlink.TUNTAP_VNET_HDR == 0 {
		t.Error("QEMU opened the tap without vnet_hdr")
	}
	// The agent converging again while QEMU holds the tap changes nothing.
	before := h0.Links(t)[p.Tap]
	netconftest.ConvergeClean(t, b, netconf.Host{
		Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))},
		Ports:    []netconf.Port{p},
	})
	if after := h0.Links(t)[p.Tap]; after != before {
		t.Errorf("converging with QEMU on the tap changed it: %+v, now %+v", before, after)
	}
}

func carrier(t *testing.T, h *netconftest.Host, name string) bool {
	t.Helper()
	l, err := h.Handle().LinkByName(name)
	if err != nil {
		t.Fatalf("tap %s: %v", name, err)
	}
	return l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
}

// startIn starts cmd in namespace ns: the child inherits the namespace
// of the thread that forks it.
func startIn(t *testing.T, ns netns.NsHandle, cmd *exec.Cmd) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		t.Fatal(err)
	}
	startErr := cmd.Start()
	if err := netns.Set(orig); err != nil {
		panic(err)
	}
	if startErr != nil {
		t.Fatalf("start %s: %v", cmd.Path, startErr)
	}
}

type recordingPolicy struct {
	calls [][]netconf.PortPolicy
	err   error
}

func (r *recordingPolicy) Converge(_ context.Context, ports []netconf.PortPolicy) error {
	r.calls = append(r.calls, slices.Clone(ports))
	return r.err
}

// Policy enforcement gets every attached port with its MAC and its port
// group's policy, and its failure is Converge's.
func TestPolicyHook(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	pol := &recordingPolicy{}
	b := newTestBackend(t, h0.NS, pol)
	pg := netconftest.IsolatedGroup("pg-x")
	pg.Policy.In.AverageBitsPerSec = 10e6
	p, stray := netconftest.NIC("vm-a", 0, "pg-x"), netconftest.NIC("vm-b", 0, "pg-unknown")
	want := netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", pg)}, Ports: []netconf.Port{p, stray}}
	netconftest.Converge(t, b, want)
	if len(pol.calls) != 1 || len(pol.calls[0]) != 1 {
		t.Fatalf("policy calls: %+v, want one with the one attached port", pol.calls)
	}
	got := pol.calls[0][0]
	if got.Tap != p.Tap || got.PortGroup != "pg-x" || got.MAC.String() != p.MAC.String() || got.Policy != pg.Policy {
		t.Fatalf("policy got %+v for port %+v", got, p)
	}
	pol.err = errors.New("nft: no such table")
	if _, err := b.Converge(t.Context(), want); err == nil || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("Converge with a failing policy: %v", err)
	}
}

// A cancelled Converge says so and changes nothing.
func TestConvergeCancelled(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newTestBackend(t, h0.NS, nil)
	before := h0.Links(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := b.Converge(ctx, netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))}})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Converge with a cancelled context: %v", err)
	}
	if after := h0.Links(t); len(after) != len(before) {
		t.Fatalf("a cancelled Converge changed the devices: %d before, %d after", len(before), len(after))
	}
}
