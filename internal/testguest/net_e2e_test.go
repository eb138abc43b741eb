package testguest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The lab's networks: each NIC of the test VM is on a bridge of its own,
// so that an answer from an address proves that very NIC works (on one
// bridge, Linux would answer for all its addresses through any NIC).
// These are documentation prefixes, and never leave the lab's namespace.
var labNets = map[string][2]string{
	"br0": {"192.0.2.0/24", "fd00:7e57::/64"},
	"br1": {"198.51.100.0/24", "fd00:7e57:1::/64"},
}

// labNIC is one NIC of the test VM: where it is plugged and what it is.
type labNIC struct {
	mac, model, tap, bridge string
}

var bootNICs = []labNIC{
	{"52:54:00:7e:57:00", "virtio-net-pci", "tap0", "br0"},
	{"52:54:00:7e:57:01", "e1000", "tap1", "br1"},
	{"52:54:00:7e:57:02", "rtl8139", "tap2", "br2"}, // no DHCP server there
}

// TestGuestNetworks boots the guest with a NIC of each model vdc offers,
// each on a tap on a bridge of the lab, and checks what a network test
// relies on: DHCP leases on every NIC, IPv6 (link-local, SLAAC), ping
// both ways, the TCP echo, static addressing through the guest agent,
// and NICs hot-plugged and unplugged.
func TestGuestNetworks(t *testing.T) {
	g := guest(t)
	lab := newGuestLab(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bootTimeout)
	defer cancel()

	lab.bridge("br0", "192.0.2.1/24", "fd00:7e57::1/64")
	lab.bridge("br1", "198.51.100.1/24", "fd00:7e57:1::1/64")
	lab.bridge("br2", "203.0.113.1/24", "")
	var nics []string
	for i, n := range bootNICs {
		lab.tap(n.tap, n.bridge)
		nics = append(nics, "-netdev", fmt.Sprintf("tap,id=hn%d,ifname=%s,script=no,downscript=no", i, n.tap),
			"-device", fmt.Sprintf("%s,netdev=hn%d,mac=%s", n.model, i, n.mac))
	}
	lab.tap("tap3", "br0") // for the hot-plugged NICs
	lab.tap("tap4", "br1")
	lab.dhcp(ctx, labNets)

	vm := startVMWith(t, g, vmConfig{
		hostname: "vdc-e2e-net", netns: lab.ns, nics: nics,
		extra: []string{"-device", "pcie-root-port,id=rp3,chassis=3", "-device", "pcie-root-port,id=rp4,chassis=4"},
	})
	qga, err := dialQGA(ctx, vm.qgaSock)
	if err != nil {
		t.Fatal(err)
	}
	defer qga.Close()
	booted := time.Since(vm.started)

	eth0 := waitLease(ctx, t, qga, bootNICs[0], true)
	eth1 := waitLease(ctx, t, qga, bootNICs[1], true)
	t.Logf("%s (virtio) %v and %s (e1000) %v configured %v after QEMU's start (guest agent up after %v)",
		eth0.name, eth0.addrs, eth1.name, eth1.addrs, time.Since(vm.started).Round(time.Millisecond), booted.Round(time.Millisecond))
	for _, i := range []guestIface{eth0, eth1} {
		checkReachable(ctx, t, lab, i)
	}
	checkEcho(ctx, t, lab, eth0, eth1)
	checkFromGuest(ctx, t, qga, eth0, eth1)
	checkStatic(ctx, t, lab, qga)
	checkHotplug(ctx, t, lab, vm, qga)
	if strings.Contains(vm.console(), "insmod") || strings.Contains(vm.console(), "no IPv6") {
		t.Errorf("the guest could not set up a driver or IPv6:\n%s", vm.console())
	}
}

// guestIface is a guest interface as the guest agent reports it.
type guestIface struct {
	name, mac string
	addrs     []netip.Addr
}

func (i guestIface) addr(pred func(netip.Addr) bool) (netip.Addr, bool) {
	for _, a := range i.addrs {
		if pred(a) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func (i guestIface) linkLocal() (netip.Addr, bool) {
	return i.addr(func(a netip.Addr) bool { return a.Is6() && a.IsLinkLocalUnicast() })
}

func guestIfaces(ctx context.Context, qga *qgaConn) (map[string]guestIface, error) {
	var raw []struct {
		Name        string
		MAC         string `json:"hardware-address"`
		IPAddresses []struct {
			Address string `json:"ip-address"`
		} `json:"ip-addresses"`
	}
	if err := qga.call(ctx, "guest-network-get-interfaces", nil, &raw); err != nil {
		return nil, err
	}
	byMAC := map[string]guestIface{}
	for _, r := range raw {
		i := guestIface{name: r.Name, mac: strings.ToLower(r.MAC)}
		for _, a := range r.IPAddresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				i.addrs = append(i.addrs, ip)
			}
		}
		byMAC[i.mac] = i
	}
	return byMAC, nil
}

// stepTimeout bounds each wait of the network test, so that a failure
// says which step failed well before the test's own deadline.
const stepTimeout = 2 * time.Minute

// waitFor polls the guest's interfaces until ok says the one with mac is
// as wanted, or fails the test with what it saw last.
func waitFor(ctx context.Context, t *testing.T, qga *qgaConn, mac, what string, ok func(guestIface, bool) bool) guestIface {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for {
		ifs, err := guestIfaces(ctx, qga)
		if err != nil {
			t.Fatal(err)
		}
		i, found := ifs[mac]
		if ok(i, found) {
			return i
		}
		select {
		case <-ctx.Done():
			t.Fatalf("NIC %s never %s; the guest's interfaces: %+v", mac, what, ifs)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitLease waits until the NIC has its DHCP lease and, with ipv6, its
// SLAAC address in its bridge's prefixes, and a link-local address.
func waitLease(ctx context.Context, t *testing.T, qga *qgaConn, n labNIC, ipv6 bool) guestIface {
	t.Helper()
	v4 := netip.MustParsePrefix(labNets[n.bridge][0])
	v6 := netip.MustParsePrefix(labNets[n.bridge][1])
	return waitFor(ctx, t, qga, n.mac, "got its addresses", func(i guestIface, found bool) bool {
		_, lease := i.addr(func(a netip.Addr) bool { return v4.Contains(a) && a.As4()[3] >= 100 && a.As4()[3] <= 199 })
		_, slaac := i.addr(v6.Contains)
		_, ll := i.linkLocal()
		return found && lease && (!ipv6 || slaac && ll)
	})
}

// checkReachable pings the NIC's addresses from the lab: its lease, its
// SLAAC address and its link-local address (through the bridge).
func checkReachable(ctx context.Context, t *testing.T, lab *guestLab, i guestIface) {
	t.Helper()
	v4, _ := i.addr(netip.Addr.Is4)
	slaac, _ := i.addr(func(a netip.Addr) bool { return a.Is6() && !a.IsLinkLocalUnicast() })
	ll, _ := i.linkLocal()
	bridge := ""
	for _, n := range bootNICs {
		if n.mac == i.mac {
			bridge = n.bridge
		}
	}
	for _, a := range []string{v4.String(), slaac.String(), ll.String() + "%" + bridge} {
		if out, err := lab.exec(ctx, "ping", "-c", "3", "-W", "2", a); err != nil {
			t.Errorf("%s does not answer ping from the lab: %v", a, err)
		} else {
			t.Logf("ping %s: %s", a, pingSummary(out))
		}
	}
}

func pingSummary(out string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, "packets transmitted") {
			return strings.TrimSpace(line)
		}
	}
	return strings.TrimSpace(out)
}

// checkEcho runs the echo counter through each NIC, over IPv4 and IPv6,
// all connections at once.
func checkEcho(ctx context.Context, t *testing.T, lab *guestLab, ifs ...guestIface) {
	t.Helper()
	var addrs []string
	for _, i := range ifs {
		v4, _ := i.addr(netip.Addr.Is4)
		slaac, _ := i.addr(func(a netip.Addr) bool { return a.Is6() && !a.IsLinkLocalUnicast() })
		addrs = append(addrs, v4.String(), slaac.String())
	}
	var wg sync.WaitGroup
	for _, a := range addrs {
		wg.Go(func() {
			if err := echoThrough(ctx, lab, a, 50); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func echoThrough(ctx context.Context, lab *guestLab, addr string, count int) error {
	hostport := net.JoinHostPort(addr, strconv.Itoa(EchoPort))
	c, err := lab.dial(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := Echo{Count: count, Interval: 5 * time.Millisecond}.Run(ctx, c)
	if err != nil {
		return fmt.Errorf("echo through %s: %w", hostport, err)
	}
	if st != (EchoStats{Sent: count, Received: count, MaxGap: st.MaxGap}) {
		return fmt.Errorf("echo through %s: %+v, want all %d lines back once, in order", hostport, st, count)
	}
	return nil
}

// checkFromGuest runs ping in the guest through the guest agent, as a test
// checking a network from the VM's side does, and checks the routes the
// leases gave.
func checkFromGuest(ctx context.Context, t *testing.T, qga *qgaConn, eth0, eth1 guestIface) {
	t.Helper()
	for _, a := range []string{"192.0.2.1", "198.51.100.1", "fd00:7e57::1", "fd00:7e57:1::1"} {
		code, out, err := qga.exec(ctx, "/bin/sh", "-c", "ping -c 3 -W 1 "+a+" 2>&1")
		if err != nil || code != 0 {
			t.Errorf("ping -c 3 -W 1 %s in the guest: exit %d, %v: %s", a, code, err, out)
		}
	}
	_, routes, err := qga.exec(ctx, "/bin/sh", "-c", "ip -4 route show default")
	if err != nil {
		t.Fatal(err)
	}
	// Both leases' routes, the first NIC's first (lower metric).
	first := strings.Index(routes, "default via 192.0.2.1 dev "+eth0.name)
	second := strings.Index(routes, "default via 198.51.100.1 dev "+eth1.name)
	if first < 0 || second < first {
		t.Errorf("default routes = %q, want via 192.0.2.1 (%s), then via 198.51.100.1 (%s)", routes, eth0.name, eth1.name)
	}
}
