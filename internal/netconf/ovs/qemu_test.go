package ovs_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/netconf/tap"
	"github.com/vdc-project/vdc/internal/testenv"
)

// QEMU opens the tap by name, with the vnet_hdr setting the backend asks
// for (off on the userspace datapath), and gets carrier; converging
// again while QEMU holds it changes nothing.
func TestQEMUOpensTap(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86", "qemu-system-x86_64")
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newOVS(t, h0.NS)
	p := netconftest.NIC("vm-q", 0, "pg-x")
	want := netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))}, Ports: []netconf.Port{p}}
	netconftest.ConvergeClean(t, b, want)
	netdev := "tap,id=n0,ifname=" + p.Tap + ",script=no,downscript=no"
	if !b.TapOffloads() {
		netdev += ",vnet_hdr=off"
	}
	cmd := exec.Command("qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-nodefaults", "-display", "none", "-S",
		"-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,mac="+p.MAC.String())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := tap.InNS(h0.NS, cmd.Start); err != nil {
		t.Fatalf("start QEMU: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		l, err := h0.Handle().LinkByName(p.Tap)
		if err != nil {
			t.Fatal(err)
		}
		if l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU (-netdev %s) did not attach to tap %s within 20s; its output: %s", netdev, p.Tap, out.String())
		}
		time.Sleep(50 * time.Millisecond) // polling an observable condition with a deadline
	}
	before := h0.Links(t)[p.Tap]
	netconftest.ConvergeClean(t, b, want)
	if after := h0.Links(t)[p.Tap]; after != before {
		t.Errorf("converging with QEMU on the tap changed it: %+v, now %+v", before, after)
	}
}
