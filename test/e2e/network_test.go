package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/dhcp"
	"github.com/vdc-project/vdc/internal/testenv"
)

// newSwitchLab is a migration lab whose hosts' network carries jumbo
// frames (as a datacenter's does for VXLAN), with a switch of the given
// backend on cluster1.
func newSwitchLab(t *testing.T, hosts int, backend string) (*netLab, *cluster) {
	lab, cl := newMigrationLab(t, hosts)
	lab.mtu = 9000
	for _, h := range lab.hosts {
		run(t, "ip", "-n", lab.ns(h), "link", "set", "eth0", "mtu", "9000")
		run(t, "ip", "-n", lab.router, "link", "set", lab.link(h), "mtu", "9000")
	}
	cl.vdc("switch", "create", "dvs1", "--cluster", "cluster1", "--backend", backend)
	return lab, cl
}

// waitRealized waits until every host reports switch sw realized.
func (cl *cluster) waitRealized(sw string, hosts int) {
	cl.t.Helper()
	var last api.Switch
	eventually(cl.t, 60*time.Second, "switch "+sw+" realized on every host", func() bool {
		cl.json(&last, "switch", "info", sw)
		if len(last.Status.Hosts) != hosts {
			return false
		}
		for _, h := range last.Status.Hosts {
			if h.State != api.RealizedOK {
				return false
			}
		}
		return true
	})
}

// netVM makes a started test VM on a host with one NIC on a port group and
// a static IPv4 address, and waits for its guest agent.
func (cl *cluster) netVM(name, host, pg, addr string) {
	cl.t.Helper()
	cl.vdc("vm", "create", name, "--memory", "192MiB", "--image", "test", "--host", host, "--nic", pg, "--start")
	eventually(cl.t, 3*time.Minute, "the guest agent of "+name+" to answer", func() bool {
		g := cl.vm(name).Status.Guest
		return g != nil && g.State == api.GuestRunning
	})
	cl.vdc("vm", "exec", name, "--", "/bin/sh", "-c", "ip link set eth0 up && ip addr add "+addr+"/24 dev eth0")
}

// pings says whether vm gets an answer from addr (three tries).
func (cl *cluster) pings(vm, addr string) bool {
	_, err := cl.try("vm", "exec", vm, "--", "/bin/ping", "-c", "3", "-W", "2", addr)
	return err == nil
}

// vdcLinks lists the devices vdc made in a host's namespace ("name master"
// pairs), read with iproute2 as an operator would.
func vdcLinks(t *testing.T, lab *netLab, host string) []string {
	out, err := exec.Command("ip", "-n", lab.ns(host), "-o", "link", "show").Output()
	if err != nil {
		t.Fatalf("list links of %s: %v", host, err)
	}
	var links []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
		if !strings.HasPrefix(name, "v") || name == "veth" {
			continue
		}
		master := ""
		for i := range f {
			if f[i] == "master" && i+1 < len(f) {
				master = f[i+1]
			}
		}
		links = append(links, name+" "+master)
	}
	return links
}

// forBackends runs a test for each switch backend, as subtests.
func forBackends(t *testing.T, test func(t *testing.T, backend string)) {
	for _, be := range []string{api.BackendBridge, api.BackendOVS} {
		t.Run(be, func(t *testing.T) {
			if be == api.BackendOVS {
				testenv.NeedTools(t, "apt-get install openvswitch-switch", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl")
			}
			test(t, be)
		})
	}
}

func TestVXLANPortGroupAcrossHosts(t *testing.T) { forBackends(t, testVXLANPortGroup) }

func testVXLANPortGroup(t *testing.T, backend string) {
	lab, cl := newSwitchLab(t, 2, backend)
	cl.vdc("portgroup", "create", "web", "--switch", "dvs1", "--vxlan", "5001")
	cl.vdc("portgroup", "create", "db", "--switch", "dvs1", "--vxlan", "5002")
	cl.waitRealized("dvs1", 2)

	cl.netVM("a", "host-1", "web", "192.168.50.1")
	cl.netVM("b", "host-2", "web", "192.168.50.2")
	cl.netVM("c", "host-2", "db", "192.168.50.3")
	if !cl.pings("a", "192.168.50.2") {
		t.Fatal("a (host-1) cannot ping b (host-2) on port group web")
	}
	if got := cl.vdc("vm", "exec", "a", "--", "/bin/sh", "-c", "echo across | nc -w 3 192.168.50.2 7777"); got != "across\n" {
		t.Fatalf("TCP from a to b's echo service: %q", got)
	}
	// c is on another port group: same subnet, another network.
	if cl.pings("a", "192.168.50.3") || cl.pings("b", "192.168.50.3") {
		t.Fatal("a VM on port group web reaches c on port group db")
	}

	// Deleting a port group in use is refused, naming the VM.
	if out, err := cl.try("portgroup", "delete", "db"); err == nil || !strings.Contains(out, "c") {
		t.Fatalf("delete port group db in use: %v %s", err, out)
	}
	if backend == api.BackendBridge {
		checkBridgeDevices(t, lab, cl)
	} else {
		cl.vdc("vm", "delete", "c", "--force")
		cl.vdc("portgroup", "delete", "db")
	}
	cl.waitRealized("dvs1", 2)
	if !cl.pings("a", "192.168.50.2") {
		t.Fatal("a lost b after port group db went")
	}
}

// checkBridgeDevices: on the bridge backend each NIC is a tap named for its
// VM in its port group's bridge, and once c and port group db are gone the
// host has dropped exactly c's tap and db's bridge and VXLAN device.
func checkBridgeDevices(t *testing.T, lab *netLab, cl *cluster) {
	links := vdcLinks(t, lab, "host-2")
	t.Logf("host-2: %v", links)
	tapIn := 0
	for _, l := range links {
		if strings.HasPrefix(l, "vt") && strings.Fields(l + " x")[1] != "x" {
			tapIn++
		}
	}
	if tapIn != 2 {
		t.Fatalf("host-2 has %d taps in a bridge, want 2 (b and c): %v", tapIn, links)
	}

	var db api.PortGroup
	cl.json(&db, "portgroup", "info", "db")
	gone := []string{netconf.TapName(cl.vm("c").Metadata.ID, 0), netconf.BridgeName(db.Metadata.ID), netconf.VXLANName(db.Metadata.ID)}
	before := vdcLinks(t, lab, "host-2")
	cl.vdc("vm", "delete", "c", "--force")
	cl.vdc("portgroup", "delete", "db")
	var after []string
	eventually(t, 30*time.Second, "host-2 drops c's tap and db's bridge and VXLAN device", func() bool {
		after = vdcLinks(t, lab, "host-2")
		return len(after) == len(before)-len(gone)
	})
	for _, l := range after {
		if slices.Contains(gone, strings.Fields(l)[0]) {
			t.Fatalf("host-2 still has %s: %v", l, after)
		}
	}
}

// TestTCPAcrossLiveMigration keeps a TCP stream from a VM to another
// while the other migrates live between hosts: the stream goes on, and
// the lines counted at the far end have no gap.
func TestTCPAcrossLiveMigration(t *testing.T) { forBackends(t, testTCPAcrossLiveMigration) }

func testTCPAcrossLiveMigration(t *testing.T, backend string) {
	_, cl := newSwitchLab(t, 2, backend)
	cl.vdc("portgroup", "create", "web", "--switch", "dvs1", "--vxlan", "5001")
	cl.waitRealized("dvs1", 2)
	cl.netVM("a", "host-1", "web", "192.168.50.1")
	cl.netVM("b", "host-2", "web", "192.168.50.2")
	// b's echo service sends each line back; a writes a numbered line every
	// 50 ms and keeps what comes back.
	// Detached from the exec's pipes, which the guest agent reads to the end.
	cl.vdc("vm", "exec", "a", "--", "/bin/sh", "-c",
		"(i=0; while :; do echo $i; i=$((i+1)); usleep 50000; done | nc 192.168.50.2 7777 >/tmp/back) </dev/null >/dev/null 2>&1 &")
	lines := func() []string {
		out := cl.vdc("vm", "exec", "a", "--", "/bin/cat", "/tmp/back")
		return strings.Fields(out)
	}
	eventually(t, 30*time.Second, "the stream runs", func() bool { return len(lines()) > 10 })
	cl.vdc("vm", "migrate", "b", "--host", "host-1")
	if vm := cl.vm("b"); vm.Spec.Host.Name != "host-1" {
		t.Fatalf("b is on %s after the migration", vm.Spec.Host.Name)
	}
	n := len(lines())
	eventually(t, 30*time.Second, "the stream goes on after the migration", func() bool { return len(lines()) > n+20 })
	got := lines()
	for i, l := range got {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d came back as %q: the stream lost or reordered data (%s)", i, l, strings.Join(got[max(0, i-3):min(len(got), i+3)], " "))
		}
	}
	t.Logf("%d lines through the migration", len(got))
}

// TestPortGroupSecurityAndShaping: a guest that takes another MAC sends
// and receives nothing until the port group allows it; a shaped port
// group's traffic runs at its limit.
func TestPortGroupSecurityAndShaping(t *testing.T) { forBackends(t, testPortGroupSecurityAndShaping) }

func testPortGroupSecurityAndShaping(t *testing.T, backend string) {
	lab, cl := newSwitchLab(t, 2, backend)
	cl.vdc("portgroup", "create", "web", "--switch", "dvs1", "--vxlan", "5001")
	cl.waitRealized("dvs1", 2)
	cl.netVM("a", "host-1", "web", "192.168.50.1")
	cl.netVM("b", "host-2", "web", "192.168.50.2")
	if !cl.pings("a", "192.168.50.2") {
		t.Fatal("a cannot ping b")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range lab.hosts {
				out, _ := exec.Command("ip", "netns", "exec", lab.ns(h), "tc", "-s", "qdisc", "show").CombinedOutput()
				t.Logf("qdiscs of %s:\n%s", h, out)
				if backend == api.BackendOVS {
					dir := filepath.Join(cl.dir, "hosts", h, "ovs")
					script := "for b in $(ovs-vsctl --db=unix:" + dir + "/db.sock list-br); do echo == $b; ovs-ofctl show $b; ovs-ofctl dump-flows $b; ovs-appctl fdb/show $b; done"
					cmd := exec.Command("ip", "netns", "exec", lab.ns(h), "sh", "-c", script)
					cmd.Env = append(os.Environ(), "OVS_RUNDIR="+dir)
					out, _ := cmd.CombinedOutput()
					t.Logf("Open vSwitch of %s:\n%s", h, out)
				}
			}
		}
	})
	spoof := func(mac string) {
		cl.vdc("vm", "exec", "a", "--", "/bin/sh", "-c", "ip link set eth0 down && ip link set eth0 address "+mac+" && ip link set eth0 up && ip neigh flush all")
	}
	real := cl.vm("a").Spec.NICs[0].MAC
	spoof("02:00:00:00:00:99")
	if cl.pings("a", "192.168.50.2") {
		t.Fatal("a guest sending from a MAC not its NIC's still reaches b (forged transmits are allowed by default?)")
	}
	cl.vdc("portgroup", "update", "web", "--allow-forged-transmits", "--allow-mac-changes")
	eventually(t, 30*time.Second, "a reaches b from its new MAC once the port group allows it", func() bool { return cl.pings("a", "192.168.50.2") })
	cl.vdc("portgroup", "update", "web", "--allow-forged-transmits=false", "--allow-mac-changes=false")
	eventually(t, 30*time.Second, "the spoofing guest is cut off again", func() bool { return !cl.pings("a", "192.168.50.2") })
	spoof(real)
	eventually(t, 30*time.Second, "a with its own MAC reaches b", func() bool { return cl.pings("a", "192.168.50.2") })

	// Shaping: 2 MB from a through b's echo service and back, the port
	// group's traffic out of each VM shaped to 2 Mbit/s (a rate a TCG guest
	// keeps up on a loaded machine): 8 s, timed in the guest from the first
	// byte sent to the last one back.
	cl.vdc("portgroup", "update", "web", "--shape-out", "2Mbit")
	cl.waitRealized("dvs1", 2)
	const bytes, limit = 4096 * 500, 2e6
	out := cl.vdc("vm", "exec", "a", "--", "/bin/sh", "-c", fmt.Sprintf("read s _ </proc/uptime; echo $s; "+
		"dd if=/dev/zero bs=4096 count=500 2>/dev/null | nc -w 1 192.168.50.2 7777 | (head -c %d | wc -c; read e _ </proc/uptime; echo $e)", bytes))
	var start, end float64
	var n int
	if _, err := fmt.Sscan(out, &start, &n, &end); err != nil || n != bytes {
		t.Fatalf("the transfer: %q (%v): want %d bytes back", out, err, bytes)
	}
	secs := end - start
	rate := bytes * 8 / secs
	t.Logf("2 MB in %.2f s: %.2f Mbit/s of TCP payload through a port group shaped to 2 Mbit/s", secs, rate/1e6)
	// The shaper counts whole frames: 1514 bytes on the wire for 1448 of
	// TCP payload (timestamps on).
	if want := limit * 1448 / 1514; rate > want*1.15 || rate < want*0.85 {
		t.Fatalf("%.2f Mbit/s through a port group shaped to 2 Mbit/s: not within 15 %%", rate/1e6)
	}
}

// TestAgentKilledWhileChangingTheNetwork: kill -9 an agent in the middle
// of realizing many port groups and removing others; its VM's traffic
// goes on while it is gone, and once restarted the host holds exactly
// the desired devices.
func TestAgentKilledWhileChangingTheNetwork(t *testing.T) {
	lab, cl := newSwitchLab(t, 2, api.BackendBridge)
	cl.vdc("portgroup", "create", "web", "--switch", "dvs1", "--vxlan", "5001")
	for i := range 10 {
		cl.vdc("portgroup", "create", fmt.Sprintf("old%d", i), "--switch", "dvs1", "--vxlan", strconv.Itoa(6000+i))
	}
	cl.waitRealized("dvs1", 2)
	cl.netVM("a", "host-1", "web", "192.168.50.1")
	cl.netVM("b", "host-2", "web", "192.168.50.2")
	// a streams numbered lines to b, which keeps them: read on b, whose
	// agent stays up.
	cl.vdc("vm", "exec", "b", "--", "/bin/sh", "-c", "(sleep 100000 | nc -l -p 9001 >/tmp/got) </dev/null >/dev/null 2>&1 &")
	cl.vdc("vm", "exec", "a", "--", "/bin/sh", "-c",
		"(sleep 1; i=0; while :; do echo $i; i=$((i+1)); usleep 50000; done | nc 192.168.50.2 9001) </dev/null >/dev/null 2>&1 &")
	lines := func() int { return len(strings.Fields(cl.vdc("vm", "exec", "b", "--", "/bin/cat", "/tmp/got"))) }
	eventually(t, 30*time.Second, "the stream runs", func() bool { return lines() > 10 })

	// Ten port groups go and ten come; host-1's agent dies as it follows
	// (it converges on each heartbeat, every second, as the changes come),
	// and the last changes come while it is dead.
	change := func(i int) {
		cl.vdc("portgroup", "delete", fmt.Sprintf("old%d", i))
		cl.vdc("portgroup", "create", fmt.Sprintf("new%d", i), "--switch", "dvs1", "--vxlan", strconv.Itoa(7000+i))
	}
	for i := range 7 {
		change(i)
	}
	cl.agents["host-1"].kill9()
	for i := 7; i < 10; i++ {
		change(i)
	}
	n := lines()
	eventually(t, 30*time.Second, "a's stream goes on with its agent dead", func() bool { return lines() > n+20 })

	cl.startAgent("host-1")
	cl.waitConnected("host-1")
	cl.waitRealized("dvs1", 2)
	var pgs []api.PortGroup
	cl.json(&pgs, "portgroup", "ls")
	want := []string{netconf.TapName(cl.vm("a").Metadata.ID, 0)}
	for _, pg := range pgs {
		if pg.Spec.Switch.Name == "dvs1" {
			want = append(want, netconf.BridgeName(pg.Metadata.ID), netconf.VXLANName(pg.Metadata.ID))
		}
	}
	var have []string
	for _, l := range vdcLinks(t, lab, "host-1") {
		have = append(have, strings.Fields(l)[0])
	}
	slices.Sort(want)
	slices.Sort(have)
	if !slices.Equal(have, want) {
		t.Fatalf("host-1 after the restart has devices\n%v\nwant exactly\n%v", have, want)
	}
	if !cl.pings("a", "192.168.50.2") {
		t.Fatal("a cannot reach b after its agent came back")
	}
}

// slaac is the address a guest makes for its NIC's MAC in an IPv6 /64
// (modified EUI-64).
func slaac(t *testing.T, prefix, mac string) string {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	return dhcp.SLAAC(netip.MustParsePrefix(prefix), hw).String()
}

// TestDHCPOnAPortGroup: VMs on a port group with DHCP get their NICs'
// fixed addresses from the host they run on, and SLAAC addresses of the
// port group's IPv6 prefix, with no setup in the guest.
func TestDHCPOnAPortGroup(t *testing.T) {
	lab, cl := newSwitchLab(t, 2, api.BackendBridge)
	const prefix6 = "2001:db8:60::/64"
	cl.vdc("portgroup", "create", "app", "--switch", "dvs1", "--vxlan", "5005", "--dhcp", "192.168.60.0/24", "--ipv6-prefix", prefix6)
	cl.waitRealized("dvs1", 2)
	for _, v := range []struct{ name, host string }{{"a", "host-1"}, {"b", "host-2"}} {
		cl.vdc("vm", "create", v.name, "--memory", "192MiB", "--image", "test", "--host", v.host, "--nic", "app", "--start")
	}
	for _, name := range []string{"a", "b"} {
		vm := cl.waitGuest(name) // until the guest reports an address
		want := vm.Spec.NICs[0].IPv4
		if !slices.Contains(vm.Status.Guest.IPAddresses, want) {
			t.Fatalf("vm %s's guest has addresses %v; its NIC's is %s", name, vm.Status.Guest.IPAddresses, want)
		}
	}
	b := cl.vm("b").Spec.NICs[0].IPv4
	if !cl.pings("a", b) {
		t.Fatalf("a cannot ping b at its DHCP address %s", b)
	}
	for _, name := range []string{"a", "b"} {
		want := slaac(t, prefix6, cl.vm(name).Spec.NICs[0].MAC)
		eventually(t, time.Minute, "the guest of "+name+" reports its SLAAC address "+want, func() bool {
			g := cl.vm(name).Status.Guest
			return g != nil && slices.Contains(g.IPAddresses, want)
		})
	}
	if b6 := slaac(t, prefix6, cl.vm("b").Spec.NICs[0].MAC); !cl.pings("a", b6) {
		t.Fatalf("a cannot ping b at its SLAAC address %s", b6)
	}

	// A host that joins later realizes the switch by itself, the others'
	// flood lists gain it, and its VMs get their addresses from it.
	lab.addHost("host-3")
	cl.startAgentToken("host-3", strings.TrimSpace(cl.vdc("host", "token", "create", "--uses", "1")))
	cl.waitConnected("host-3")
	cl.waitRealized("dvs1", 3)
	cl.vdc("vm", "create", "c", "--memory", "192MiB", "--image", "test", "--host", "host-3", "--nic", "app", "--start")
	c := cl.waitGuest("c").Spec.NICs[0].IPv4
	if !cl.pings("a", c) || !cl.pings("b", c) {
		t.Fatalf("a and b cannot both reach c (%s) on the host that joined later", c)
	}
}

// TestLLDPShowsTheSwitchPort: with an LLDP speaker on the lab's router
// (the hosts' top-of-rack switch), vdc host network shows each host's
// uplink plugged into its port; each host runs one lldpd, also after its
// agent restarts.
func TestLLDPShowsTheSwitchPort(t *testing.T) {
	testenv.NeedTools(t, "apt-get install lldpd", "lldpd", "lldpcli")
	lab, cl := newSwitchLab(t, 2, api.BackendBridge)
	// lldpcli runs as _lldpd: its socket must be where that user may go.
	dir, err := os.MkdirTemp("", "vdc-tor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "tor.socket")
	tor := startCmd(t, "lldpd of the lab router", "ip", "netns", "exec", lab.router, "lldpd", "-d", "-u", sock, "-S", "lab top-of-rack")
	t.Cleanup(func() { _ = tor.stop(syscall.SIGTERM) })
	eventually(t, 10*time.Second, "the router's lldpd", func() bool {
		return exec.Command("ip", "netns", "exec", lab.router, "lldpcli", "-u", sock, "configure", "system", "hostname", "tor1").Run() == nil
	})
	_ = exec.Command("ip", "netns", "exec", lab.router, "lldpcli", "-u", sock, "configure", "lldp", "tx-interval", "5").Run()
	seen := func(host string) bool {
		var n struct {
			Uplinks []api.HostUplink `json:"uplinks"`
		}
		cl.json(&n, "host", "network", host)
		for _, u := range n.Uplinks {
			for _, nb := range u.Neighbors {
				if u.Name == "eth0" && nb.SysName == "tor1" && nb.PortDescr == lab.link(host) {
					return true
				}
			}
		}
		return false
	}
	lldpds := func(host string) int {
		out, _ := exec.Command("ip", "netns", "pids", lab.ns(host)).Output()
		n := 0
		for _, p := range strings.Fields(string(out)) {
			if exe, err := os.Readlink("/proc/" + p + "/exe"); err == nil && filepath.Base(exe) == "lldpd" {
				n++
			}
		}
		return n
	}
	for _, h := range lab.hosts {
		eventually(t, 90*time.Second, h+" shows its uplink on tor1's port "+lab.link(h), func() bool { return seen(h) })
	}
	before := lldpds("host-1")
	cl.agents["host-1"].kill9()
	cl.startAgent("host-1")
	cl.waitConnected("host-1")
	cl.heartbeats(15, "host-1") // more than one round of reading the uplinks
	if after := lldpds("host-1"); after != before || !seen("host-1") {
		t.Fatalf("after an agent restart host-1 runs %d lldpd processes (had %d), neighbour seen: %v", after, before, seen("host-1"))
	}
}
