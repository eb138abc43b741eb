package dhcp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var labPrefix6 = netip.MustParsePrefix("2001:db8:64::/64")

// addrs6 are the global IPv6 addresses of the VM's eth0; settled, only
// those that passed duplicate address detection.
func (vm *labVM) addrs6(t *testing.T, settled bool) []netip.Addr {
	t.Helper()
	h, err := netlink.NewHandleAt(vm.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	as, err := h.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Addr
	for _, a := range as {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.IsLinkLocalUnicast() && (!settled || a.Flags&unix.IFA_F_TENTATIVE == 0) {
			out = append(out, ip)
		}
	}
	return out
}

func (vm *labVM) waitAddr6(t *testing.T, want netip.Addr) {
	t.Helper()
	waitFor(t, 30*time.Second, "VM "+vm.name+" takes SLAAC address "+want.String(), func() bool {
		for _, a := range vm.addrs6(t, true) {
			if a == want {
				return true
			}
		}
		return false
	})
}

// Every host advertises a port group's IPv6 prefix to its own VMs:
// guests make their SLAAC addresses from it and reach each other across
// hosts, take no default route from a host (it is no router), cannot
// reach the host, and the advertisements of one host do not reach
// another host's VMs.
func TestRouterAdvertisementsGiveSLAAC(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	tunnel(t, a, b)
	va := newVM(t, a, "a1", "52:54:00:0a:00:01")
	vb := newVM(t, b, "b1", "52:54:00:0b:00:01")
	s := Service{PortGroup: labPG, Bridge: labBridge, Prefix6: labPrefix6, MTU: 1450,
		DNS: []netip.Addr{netip.MustParseAddr("2001:db8:53::53")}}
	a.converge(t, s) // host b does not advertise yet

	wantA, wantB := SLAAC(labPrefix6, va.mac), SLAAC(labPrefix6, vb.mac)
	va.waitAddr6(t, wantA)
	// VM b1 asks for a router (its link comes up again): host a's
	// answer must not cross the tunnel.
	if out, err := vb.run(t, 5*time.Second, "busybox", "sh", "-c", "ip link set eth0 down && ip link set eth0 up"); err != nil {
		t.Fatalf("VM b1: relink: %v\n%s", err, out)
	}
	// Host a advertises every few seconds; once one was stopped at the
	// tunnel, VM b1 must have nothing from it.
	dropped := serverFramesDropped(t, a)
	waitFor(t, 30*time.Second, "host a's tunnel port drops an advertisement", func() bool {
		return serverFramesDropped(t, a) > dropped
	})
	// A ping from VM a1 to VM b1 takes the advertisement's way after it:
	// once it is answered, b1 would have had the advertisement.
	bLL := SLAAC(linkLocal, vb.mac).String()
	waitFor(t, 20*time.Second, "VM a1 pings VM b1's link-local address "+bLL, func() bool {
		_, err := va.run(t, 5*time.Second, "busybox", "ping", "-6", "-c", "1", "-W", "1", "-I", "eth0", bLL)
		return err == nil
	})
	if got := vb.addrs6(t, false); len(got) > 0 {
		t.Fatalf("VM b1 on host b took %v from host a's advertisements", got)
	}

	b.converge(t, s)
	vb.waitAddr6(t, wantB)
	if out, err := va.run(t, 10*time.Second, "busybox", "ping", "-6", "-c", "1", "-W", "2", wantB.String()); err != nil {
		t.Fatalf("VM a1 cannot ping VM b1's SLAAC address over the tunnel: %v\n%s", err, out)
	}
	routes, _ := va.run(t, 5*time.Second, "busybox", "ip", "-6", "route")
	if strings.Contains(routes, "default") {
		t.Errorf("VM a1 took a default route from a host that is no router:\n%s", routes)
	}
	if !strings.Contains(routes, labPrefix6.String()) {
		t.Errorf("VM a1 has no on-link route for %s:\n%s", labPrefix6, routes)
	}
	if out, err := va.run(t, 5*time.Second, "busybox", "ping", "-6", "-c", "1", "-W", "1",
		ServerIP6(labPG, labPrefix6).String()); err == nil {
		t.Errorf("VM a1 reaches its host at the server's address:\n%s", out)
	}

	// Without the prefix the host takes its addresses off the bridge.
	a.converge(t)
	if l := a.link(t, labBridge); true {
		as, _ := a.h.AddrList(l, netlink.FAMILY_V6)
		for _, x := range as {
			if ip, _ := netip.AddrFromSlice(x.IP); ip == ServerIP6(labPG, labPrefix6) || ip == ServerIP6(labPG, linkLocal) {
				t.Errorf("host a kept the server's address %s after the service went", ip)
			}
		}
	}
}

// serverFramesDropped is how many frames from the server host h's rules
// kept from leaving the host (the first rule of the port group's
// isolation chain).
func serverFramesDropped(t *testing.T, h *labHost) uint64 {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := c.GetRules(&nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge},
		&nftables.Chain{Name: "iso-" + labBridge})
	if err != nil || len(rules) == 0 {
		t.Fatalf("host %s: rules of chain iso-%s: %v", h.name, labBridge, err)
	}
	for _, e := range rules[0].Exprs {
		if c, ok := e.(*expr.Counter); ok {
			return c.Packets
		}
	}
	t.Fatalf("host %s: the first rule of iso-%s counts nothing", h.name, labBridge)
	return 0
}
