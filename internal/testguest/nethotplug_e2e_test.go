package testguest

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// checkStatic addresses the NIC that has no DHCP server by hand through
// the guest agent, as a test without DHCP does, and checks the address
// works and survives its DHCP client restarting (whose deconfig removes
// only what a lease added).
func checkStatic(ctx context.Context, t *testing.T, lab *guestLab, qga *qgaConn) {
	t.Helper()
	n := bootNICs[2]
	i := waitFor(ctx, t, qga, n.mac, "came up with a link-local address", func(i guestIface, found bool) bool {
		_, ll := i.linkLocal()
		return found && ll
	})
	if code, out, err := qga.exec(ctx, "/bin/sh", "-c", "ip addr add 203.0.113.10/24 dev "+i.name+" 2>&1"); err != nil || code != 0 {
		t.Fatalf("ip addr add 203.0.113.10/24 dev %s in the guest: exit %d, %v: %s", i.name, code, err, out)
	}
	ll, _ := i.linkLocal()
	for _, a := range []string{"203.0.113.10", ll.String() + "%" + n.bridge} {
		if _, err := lab.exec(ctx, "ping", "-c", "3", "-W", "2", a); err != nil {
			t.Errorf("%s (rtl8139, static) does not answer ping from the lab: %v", a, err)
		}
	}
	if err := echoThrough(ctx, lab, "203.0.113.10", 20); err != nil {
		t.Error(err)
	}

	// The restarted client has run its deconfig once it sends a discover
	// ("udhcpc: broadcasting discover").
	log := "/var/log/udhcpc-" + i.name + ".log"
	progress := "awk '/started,/ { s++; d = 0 } /discover/ { d = 1 } END { print s + 0, d + 0 }' " + log
	_, before, err := qga.exec(ctx, "/bin/sh", "-c", progress)
	if err != nil {
		t.Fatal(err)
	}
	var starts int
	fmt.Sscan(before, &starts)
	if code, out, err := qga.exec(ctx, "/bin/sh", "-c", "read -r pid _ </run/vdc-net/"+i.name+" && kill $pid 2>&1"); err != nil || code != 0 {
		t.Fatalf("kill the DHCP client of %s: exit %d, %v: %s", i.name, code, err, out)
	}
	want := fmt.Sprintf("%d 1\n", starts+1)
	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for {
		_, now, err := qga.exec(ctx, "/bin/sh", "-c", progress)
		if err != nil {
			t.Fatal(err)
		}
		if now == want {
			break
		}
		select {
		case <-wctx.Done():
			_, l, _ := qga.exec(ctx, "/bin/cat", log)
			t.Fatalf("the DHCP client of %s was not restarted: starts and discover in its log %q, want %q:\n%s", i.name, now, want, l)
		case <-time.After(250 * time.Millisecond):
		}
	}
	ifs, err := guestIfaces(ctx, qga)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ifs[n.mac].addr(func(a netip.Addr) bool { return a.String() == "203.0.113.10" }); !ok {
		t.Errorf("the static address went when the DHCP client of %s restarted: %v", i.name, ifs[n.mac].addrs)
	}
}

// checkHotplug plugs a NIC into the running VM, checks it gets a lease
// and answers, unplugs it and checks its DHCP client stopped, then plugs
// a NIC of another model, which may take the name of the first.
func checkHotplug(ctx context.Context, t *testing.T, lab *guestLab, vm *testVM, qga *qgaConn) {
	t.Helper()
	q, err := dialQMP(ctx, vm.qmpSock)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	plug := func(id, bus string, n labNIC) {
		t.Helper()
		netdev := map[string]any{"type": "tap", "id": "h" + id, "ifname": n.tap, "script": "no", "downscript": "no"}
		if err := q.executeArgs(ctx, "netdev_add", netdev); err != nil {
			t.Fatal(err)
		}
		dev := map[string]any{"driver": n.model, "id": id, "netdev": "h" + id, "mac": n.mac, "bus": bus}
		if err := q.executeArgs(ctx, "device_add", dev); err != nil {
			t.Fatal(err)
		}
	}

	first := labNIC{"52:54:00:7e:57:03", "virtio-net-pci", "tap3", "br0"}
	plugged := time.Now()
	plug("nic3", "rp3", first)
	i := waitLease(ctx, t, qga, first, false)
	v4, _ := i.addr(netip.Addr.Is4)
	t.Logf("hot-plugged %s got %v %v after device_add", i.name, v4, time.Since(plugged).Round(time.Millisecond))
	if _, err := lab.exec(ctx, "ping", "-c", "3", "-W", "2", v4.String()); err != nil {
		t.Errorf("hot-plugged %s (%s) does not answer ping: %v", i.name, v4, err)
	}

	if err := q.executeArgs(ctx, "device_del", map[string]any{"id": "nic3"}); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, qga, first.mac, "went away after device_del", func(_ guestIface, found bool) bool { return !found })
	clients := `for p in $(pidof udhcpc); do tr '\0' ' ' </proc/$p/cmdline; echo; done; ls /run/vdc-net`
	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	for {
		_, out, err := qga.exec(ctx, "/bin/sh", "-c", clients)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "-i "+i.name+" ") && !strings.Contains(out, "\n"+i.name+"\n") {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("the DHCP client of unplugged %s is still there:\n%s", i.name, out)
		case <-time.After(250 * time.Millisecond):
		}
	}

	second := labNIC{"52:54:00:7e:57:04", "e1000", "tap4", "br1"}
	plug("nic4", "rp4", second)
	j := waitLease(ctx, t, qga, second, false)
	t.Logf("then hot-plugged e1000 %s got %v", j.name, j.addrs)
}
