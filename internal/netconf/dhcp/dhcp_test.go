package dhcp

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
)

func (vm *labVM) run(t *testing.T, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	return vm.runWith(t, timeout, nil, name, args...)
}

// checkLease runs a DHCP client in vm and checks that it gets ip and
// the service's options from host, which records the lease, and that
// the other host's server did not lease it anything.
func checkLease(t *testing.T, vm *labVM, ip, hostname string, host, other *labHost) {
	t.Helper()
	got, out := newClient(t, vm).once(t)
	if got == nil {
		t.Fatalf("VM %s got no lease:\n%s", vm.name, out)
	}
	want := map[string]string{"ip": ip, "mask": "24", "serverid": labServer.String(), "router": "192.0.2.1",
		"dns": "198.51.100.53", "mtu": "1450", "hostname": hostname, "lease": "600"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("VM %s: %s = %q, want %q (all: %v)", vm.name, k, got[k], v, got)
		}
	}
	waitFor(t, 5*time.Second, "host "+host.name+" records the lease of "+vm.name, func() bool {
		return strings.Contains(host.lease(vm.mac), " "+ip+" ")
	})
	if l := other.lease(vm.mac); l != "" {
		t.Errorf("host %s also leased to VM %s: %s", other.name, vm.name, l)
	}
}

// checkUnheard checks that host h's server logged nothing for vm. Call
// it a while (a DHCP exchange of seconds) after vm's last DHCP packet:
// dnsmasq writes its log when idle.
func checkUnheard(t *testing.T, h *labHost, vm *labVM) {
	t.Helper()
	if l := h.logged(vm.mac); len(l) > 0 {
		t.Errorf("host %s heard VM %s:\n%s", h.name, vm.name, strings.Join(l, "\n"))
	}
}

// Two hosts on one tunnelled port group, each answering its own VMs
// only, from the same address; an unknown MAC gets nothing; the host
// offers its VMs nothing but DHCP; a second Converge changes nothing.
func TestEachHostAnswersItsOwnVMs(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	tunnel(t, a, b)
	va := newVM(t, a, "a1", "52:54:00:0a:00:01")
	vb := newVM(t, b, "b1", "52:54:00:0b:00:01")
	stranger := newVM(t, a, "u1", "52:54:00:0f:00:01")
	sa := service(va.binding("192.0.2.10", "vm-a1"))
	sb := service(vb.binding("192.0.2.20", "vm-b1"))
	a.converge(t, sa)
	b.converge(t, sb)
	pa, pb := a.pid(t), b.pid(t)

	checkLease(t, va, "192.0.2.10", "vm-a1", a, b)
	checkLease(t, vb, "192.0.2.20", "vm-b1", b, a)

	if got, out := newClient(t, stranger).once(t); got != nil {
		t.Errorf("VM with an unknown MAC got a lease: %v\n%s", got, out)
	}
	if l := a.lease(stranger.mac) + b.lease(stranger.mac); l != "" {
		t.Errorf("unknown MAC leased: %s", l)
	}
	if l := a.logged(stranger.mac); len(l) == 0 || !strings.Contains(strings.Join(l, "\n"), "ignored") {
		t.Errorf("host a's dnsmasq did not log ignoring the unknown MAC: %q", l)
	}
	// Seconds after the others' last DHCP packets: their logs are written.
	checkUnheard(t, b, va)
	checkUnheard(t, a, vb)
	checkUnheard(t, b, stranger)

	// The network works across hosts, but the host takes nothing from
	// its VMs but DHCP, though ARP resolves the server to its MAC.
	if out, err := va.run(t, 10*time.Second, "busybox", "ping", "-c", "1", "-W", "2", "192.0.2.20"); err != nil {
		t.Fatalf("VM a1 cannot ping VM b1 over the tunnel: %v\n%s", err, out)
	}
	if got := udpReaches(t, va, a, labServer.String()+":9999"); got != "" {
		t.Errorf("host a received a datagram from VM a1 at the server's address: %q", got)
	}
	neigh, _ := va.run(t, 5*time.Second, "busybox", "ip", "neigh", "show", labServer.String())
	if !strings.Contains(neigh, ServerMAC(labPG).String()) {
		t.Errorf("VM a1 resolved the server to %q, want MAC %s", neigh, ServerMAC(labPG))
	}

	readsBefore := strings.Count(a.file(logFile), "read "+filepath.Join(a.dir(), hostsFile))
	a.converge(t, sa)
	b.converge(t, sb)
	if a.pid(t) != pa || b.pid(t) != pb {
		t.Errorf("a second Converge changed the servers: pids %d %d, were %d %d", a.pid(t), b.pid(t), pa, pb)
	}
	if reads := strings.Count(a.file(logFile), "read "+filepath.Join(a.dir(), hostsFile)); reads != readsBefore {
		t.Errorf("a second Converge made dnsmasq re-read its bindings (%d reads, were %d)", reads, readsBefore)
	}
	if n := countServers(t, a.dir()); n != 1 {
		t.Errorf("%d dnsmasq processes serve host a's port group, want 1", n)
	}
}

// Changed bindings reach the running dnsmasq (SIGHUP): same process,
// new addresses.
func TestBindingsChangeWithoutRestart(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	va := newVM(t, a, "a1", "52:54:00:0a:00:01")
	vc := newVM(t, a, "a2", "52:54:00:0a:00:02")
	a.converge(t, service(va.binding("192.0.2.10", "vm-a1")))
	pid := a.pid(t)
	checkLease(t, va, "192.0.2.10", "vm-a1", a, b)
	if got, _ := newClient(t, vc).once(t); got != nil {
		t.Fatalf("VM a2 got a lease before it had a binding: %v", got)
	}

	a.converge(t, service(va.binding("192.0.2.11", "vm-a1-new"), vc.binding("192.0.2.30", "vm-a2")))
	if now := a.pid(t); now != pid {
		t.Fatalf("changing bindings restarted dnsmasq: pid %d, was %d", now, pid)
	}
	checkLease(t, va, "192.0.2.11", "vm-a1-new", a, b)
	checkLease(t, vc, "192.0.2.30", "vm-a2", a, b)
	if now := a.pid(t); now != pid {
		t.Errorf("dnsmasq changed after serving the new bindings: pid %d, was %d", now, pid)
	}
}

// A VM that moved to another host (same NIC, address and ARP cache)
// renews its lease with one unicast request, which its new host's
// server answers: the server's address and MAC are the same there.
func TestMigratedVMRenewsWithNewHost(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	tunnel(t, a, b)
	vm := newVM(t, a, "m1", "52:54:00:0a:00:09")
	peer := newVM(t, a, "p1", "52:54:00:0a:00:0a")
	ip := netip.MustParseAddr("192.0.2.40")
	bind := vm.binding(ip.String(), "vm-m1")
	a.converge(t, service(bind, peer.binding("192.0.2.41", "vm-p1")))
	b.converge(t, service())
	checkLease(t, vm, ip.String(), "vm-m1", a, b)
	checkLease(t, peer, "192.0.2.41", "vm-p1", a, b)
	// A first renewal, with host a: the guest now has the server in its
	// ARP cache, as a guest that has run for a while has.
	r, err := renew(t, vm, ip, 3*time.Second)
	checkRenewed(t, r, err, ip, "on host a")
	if neigh, _ := vm.run(t, 5*time.Second, "busybox", "ip", "neigh", "show", labServer.String()); !strings.Contains(neigh, ServerMAC(labPG).String()) {
		t.Fatalf("VM m1 has no ARP entry for the server's MAC: %q", neigh)
	}

	// The target host knows the VM's binding before the switch-over.
	b.converge(t, service(bind))
	vm.migrate(t, b)
	a.converge(t, service(peer.binding("192.0.2.41", "vm-p1")))
	heardOnA := len(a.logged(vm.mac))
	// The path through host b works (to a VM left on host a) and the
	// guest still has the server's MAC in its ARP cache.
	if out, err := vm.run(t, 10*time.Second, "busybox", "ping", "-c", "1", "-W", "2", "192.0.2.41"); err != nil {
		t.Fatalf("VM m1 cannot reach VM p1 after the migration: %v\n%s", err, out)
	}
	if neigh, _ := vm.run(t, 5*time.Second, "busybox", "ip", "neigh", "show", labServer.String()); !strings.Contains(neigh, ServerMAC(labPG).String()) {
		t.Fatalf("VM m1 lost the server from its ARP cache in the migration: %q", neigh)
	}
	r, err = renew(t, vm, ip, 3*time.Second)
	checkRenewed(t, r, err, ip, "on host b")
	waitFor(t, 5*time.Second, "host b records the renewed lease", func() bool {
		return strings.Contains(b.lease(vm.mac), " "+ip.String()+" ")
	})
	// One more exchange, seconds long, so host a's log is written.
	_, _ = newClient(t, vm).once(t)
	if l := a.logged(vm.mac); len(l) != heardOnA {
		t.Errorf("host a heard VM m1 after it left:\n%s", strings.Join(l[heardOnA:], "\n"))
	}
}

// Two port groups on one host, with the same subnet and server address
// (tenants choose their subnets): each dnsmasq answers on its own
// bridge only.
func TestTwoPortGroupsOneHost(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	a.addBridge(t, "vbdhcptest2")
	web := newVM(t, a, "w1", "52:54:00:0a:00:01")
	db := newVMOn(t, a, "vbdhcptest2", "d1", "52:54:00:0d:00:01")
	sWeb := service(web.binding("192.0.2.10", "web1"))
	sDB := service(db.binding("192.0.2.10", "db1"))
	sDB.PortGroup, sDB.Bridge = "pg-db", "vbdhcptest2"
	a.converge(t, sWeb, sDB)

	checkLease(t, web, "192.0.2.10", "web1", a, b)
	got, out := newClient(t, db).once(t)
	if got["ip"] != "192.0.2.10" || got["hostname"] != "db1" {
		t.Fatalf("VM d1 on the second port group got %v\n%s", got, out)
	}
	dbDir := filepath.Join(a.runDir, "pg-db")
	logs := func(dir string) string { b, _ := os.ReadFile(filepath.Join(dir, logFile)); return string(b) }
	if strings.Contains(logs(a.dir()), db.mac.String()) || strings.Contains(logs(dbDir), web.mac.String()) {
		t.Errorf("a port group's dnsmasq heard the other's VM:\nweb:\n%s\ndb:\n%s", logs(a.dir()), logs(dbDir))
	}
	if n := countServers(t, dbDir) + countServers(t, a.dir()); n != 2 {
		t.Errorf("%d dnsmasq processes, want 2", n)
	}

	// One port group's service goes; the other's stays as it was.
	pid := a.pid(t)
	a.converge(t, sWeb)
	if _, err := os.Stat(dbDir); !os.IsNotExist(err) || countServers(t, dbDir) != 0 {
		t.Errorf("the removed port group's service is left: %v, %d servers", err, countServers(t, dbDir))
	}
	if a.pid(t) != pid {
		t.Errorf("removing the other port group's service restarted this one")
	}
}

// A killed dnsmasq comes back with the next Converge; a changed
// configuration restarts it with its leases; a removed service leaves
// nothing behind.
func TestServerLifecycle(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	vm := newVM(t, a, "a1", "52:54:00:0a:00:01")
	origMAC := a.link(t, labBridge).Attrs().HardwareAddr
	s := service(vm.binding("192.0.2.10", "vm-a1"))
	a.converge(t, s)
	first := a.pid(t)
	if mac := a.link(t, labBridge).Attrs().HardwareAddr; !bytes.Equal(mac, ServerMAC(labPG)) {
		t.Errorf("bridge MAC %s, want the server's %s", mac, ServerMAC(labPG))
	}
	if !hasAddr(t, a, labServer.String()+"/32") {
		t.Errorf("bridge lacks the server's address %s/32", labServer)
	}

	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "killed dnsmasq gone", func() bool { return !alive(first) })
	a.converge(t, s)
	second := a.pid(t)
	if second == first {
		t.Fatalf("dnsmasq pid %d after it was killed", second)
	}
	checkLease(t, vm, "192.0.2.10", "vm-a1", a, b)

	s.MTU = 1400
	a.converge(t, s)
	third := a.pid(t)
	if third == second || alive(second) {
		t.Errorf("a new MTU did not restart dnsmasq: pid %d (was %d, alive %v)", third, second, alive(second))
	}
	if !strings.Contains(a.lease(vm.mac), " 192.0.2.10 ") {
		t.Errorf("the restart lost the lease: %q", a.file(leaseFile))
	}
	if got, out := newClient(t, vm).once(t); got["mtu"] != "1400" {
		t.Errorf("after the restart the VM got %v, want mtu 1400\n%s", got, out)
	}
	if confs, _ := filepath.Glob(filepath.Join(a.dir(), confPrefix+"*")); len(confs) != 1 {
		t.Errorf("configuration files %v, want the current one only", confs)
	}

	a.converge(t)
	if alive(third) {
		t.Errorf("dnsmasq %d still runs after its service was removed", third)
	}
	if _, err := os.Stat(a.dir()); !os.IsNotExist(err) {
		t.Errorf("service directory left behind: %v", err)
	}
	if hasAddr(t, a, labServer.String()+"/32") {
		t.Errorf("server address left on the bridge")
	}
	if mac := a.link(t, labBridge).Attrs().HardwareAddr; !bytes.Equal(mac, origMAC) {
		t.Errorf("bridge MAC %s, want its own %s back", mac, origMAC)
	}
	if hasTable(t, a) {
		t.Errorf("nftables table bridge %s left behind", TableName)
	}
}

// udpReaches sends datagrams from vm to addr and returns what a socket
// of host h listening on addr's port received within two seconds.
func udpReaches(t *testing.T, vm *labVM, h *labHost, addr string) string {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	var ln net.PacketConn
	if err := inNS(h.ns, func() (err error) { ln, err = net.ListenPacket("udp4", ":"+port); return err }); err != nil {
		t.Fatalf("listen on host %s: %v", h.name, err)
	}
	defer ln.Close()
	var conn net.Conn
	if err := inNS(vm.ns, func() (err error) { conn, err = net.Dial("udp4", addr); return err }); err != nil {
		t.Fatalf("VM %s: dial %s: %v", vm.name, addr, err)
	}
	defer conn.Close()
	for range 3 {
		_, _ = conn.Write([]byte("probe from " + vm.name))
	}
	_ = ln.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, _, err := ln.ReadFrom(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

func hasAddr(t *testing.T, h *labHost, cidr string) bool {
	t.Helper()
	addrs, err := h.h.AddrList(h.link(t, labBridge), 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if a.IPNet.String() == cidr {
			return true
		}
	}
	return false
}

func hasTable(t *testing.T, h *labHost) bool {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(h.ns)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == TableName {
			return true
		}
	}
	return false
}

// countServers is how many processes run dnsmasq with a configuration
// in dir.
func countServers(t *testing.T, dir string) int {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, p := range procs {
		b, _ := os.ReadFile(p)
		args := strings.Split(string(b), "\x00")
		if filepath.Base(args[0]) == "dnsmasq" && strings.Contains(string(b), "--conf-file="+dir+"/") {
			n++
		}
	}
	return n
}
