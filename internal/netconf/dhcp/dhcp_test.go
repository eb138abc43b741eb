package dhcp

import (
	"bytes"
	"context"
	"net"
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
// the other host's server neither leased nor logged anything for it.
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
	if l := other.logged(vm.mac); len(l) > 0 {
		t.Errorf("host %s heard VM %s:\n%s", other.name, vm.name, strings.Join(l, "\n"))
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
	if l := b.logged(stranger.mac); len(l) > 0 {
		t.Errorf("host b heard the unknown MAC on host a:\n%s", strings.Join(l, "\n"))
	}

	// The network works across hosts, but the server takes no ping,
	// though ARP resolves it to the server's MAC.
	if out, err := va.run(t, 10*time.Second, "busybox", "ping", "-c", "1", "-W", "2", "192.0.2.20"); err != nil {
		t.Fatalf("VM a1 cannot ping VM b1 over the tunnel: %v\n%s", err, out)
	}
	if out, err := va.run(t, 10*time.Second, "busybox", "ping", "-c", "2", "-W", "1", labServer.String()); err == nil {
		t.Errorf("VM a1 pinged the DHCP server's address:\n%s", out)
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
// renews its lease by unicast with its new host's server, at once.
func TestMigratedVMRenewsWithNewHost(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	tunnel(t, a, b)
	vm := newVM(t, a, "m1", "52:54:00:0a:00:09")
	bind := vm.binding("192.0.2.40", "vm-m1")
	a.converge(t, service(bind))
	b.converge(t, service())

	c := newClient(t, vm)
	out, err := os.Create(filepath.Join(t.TempDir(), "udhcpc.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := vm.command(ctx, "busybox", "udhcpc", "-f", "-i", "eth0", "-t", "3", "-T", "3", "-s", c.script)
	cmd.Env = append(cmd.Env, "EVENTS="+c.events)
	cmd.Stdout, cmd.Stderr = out, out
	vm.start(t, cmd)
	defer func() { cancel(); _ = cmd.Wait() }()
	waitFor(t, 15*time.Second, "VM m1 bound on host a", func() bool { return c.last(t, "bound")["ip"] == "192.0.2.40" })

	vm.migrate(t, b)
	a.converge(t, service())
	b.converge(t, service(bind))
	heardOnA := len(a.logged(vm.mac))

	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "VM m1 renewed its lease on host b", func() bool {
		return c.last(t, "renew")["ip"] == "192.0.2.40"
	})
	log, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(log), "sending renew to server "+labServer.String()) || strings.Contains(string(log), "rebind") {
		t.Errorf("the renewal was not one unicast request answered at once:\n%s", log)
	}
	if !strings.Contains(strings.Join(b.logged(vm.mac), "\n"), "DHCPACK") || !strings.Contains(b.lease(vm.mac), " 192.0.2.40 ") {
		t.Errorf("host b did not acknowledge VM m1's renewal: log %q, lease %q", b.logged(vm.mac), b.lease(vm.mac))
	}
	if l := a.logged(vm.mac); len(l) != heardOnA {
		t.Errorf("host a heard VM m1 after it left:\n%s", strings.Join(l[heardOnA:], "\n"))
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

// mustMAC parses a MAC for the table tests.
func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}
