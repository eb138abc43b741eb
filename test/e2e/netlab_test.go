package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vdc-project/vdc/internal/lab"
	"github.com/vdc-project/vdc/internal/testenv"
)

// netLab is a small routed network on this machine. A router namespace
// joins the server's subnet (10.S.0.0/24, whose .1 is in the root
// namespace, where the server listens) and one subnet per host
// (10.S.i.0/24, the host a namespace of its own at .2). What crosses
// between hosts really crosses a network, and the router can make the
// path between hosts a slow WAN (see wan) or cut a host off.
type netLab struct {
	t      *testing.T
	id     string // unique per lab: names of the namespaces and links
	net    int    // S in 10.S.0.0/16
	router string // the router's namespace
	hosts  []string
	wanemu *proc // the WAN emulator, once started
	mtu    int   // of the hosts' links, when not 1500
}

// needNetLab skips unless this is root with iproute2, or fails with
// VDC_REQUIRE_E2E=1.
func needNetLab(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "network namespaces need root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "iproute2 (ip) is not installed"
	}
	if why != "" {
		testenv.Skip(t, "%s", why)
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// addNS makes a network namespace whose processes (VMs outlive agents)
// are killed and which is removed when the test ends.
func addNS(t *testing.T, ns string) {
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() {
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				var pid int
				fmt.Sscan(p, &pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		exec.Command("ip", "netns", "del", ns).Run()
	})
	run(t, "ip", "-n", ns, "link", "set", "lo", "up")
}

// labNets hands out the S of 10.S.0.0/16 to labs: distinct for labs of
// tests that run in parallel, from a random start so that two test
// processes are unlikely to meet.
var labNets = struct {
	sync.Mutex
	next int
}{next: rand.IntN(100)}

func nextLabNet() int {
	labNets.Lock()
	defer labNets.Unlock()
	labNets.next++
	return 100 + labNets.next%100
}

// newNetLab makes n hosts named host-1..host-n.
func newNetLab(t *testing.T, n int) *netLab {
	needNetLab(t)
	l := &netLab{t: t, id: fmt.Sprintf("%04x", rand.IntN(0xffff)), net: nextLabNet()}
	l.router = "vdcrt" + l.id
	addNS(t, l.router)
	r := []string{"ip", "netns", "exec", l.router}
	run(t, append(r, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")...)

	// The server's side, in the root namespace.
	up := "vdcup" + l.id
	run(t, "ip", "link", "add", up, "type", "veth", "peer", "name", "up0", "netns", l.router)
	t.Cleanup(func() { exec.Command("ip", "link", "del", up).Run() })
	run(t, "ip", "addr", "add", l.serverIP()+"/24", "dev", up)
	run(t, "ip", "link", "set", up, "up")
	run(t, "ip", "route", "add", fmt.Sprintf("10.%d.0.0/16", l.net), "via", l.addr(0, 2))
	run(t, "ip", "-n", l.router, "addr", "add", l.addr(0, 2)+"/24", "dev", "up0")
	run(t, "ip", "-n", l.router, "link", "set", "up0", "up")

	for i := 1; i <= n; i++ {
		l.addHost(fmt.Sprintf("host-%d", i))
	}
	return l
}

// addHost adds host name ("host-N") to the lab: a namespace on subnet N,
// routed through the router, its eth0 jumbo-framed like the others'.
func (l *netLab) addHost(name string) {
	t := l.t
	var i int
	fmt.Sscan(strings.TrimPrefix(name, "host-"), &i)
	ns := l.ns(name)
	addNS(t, ns)
	run(t, "ip", "-n", l.router, "link", "add", l.link(name), "type", "veth", "peer", "name", "eth0", "netns", ns)
	run(t, "ip", "-n", l.router, "addr", "add", l.addr(i, 1)+"/24", "dev", l.link(name))
	run(t, "ip", "-n", l.router, "link", "set", l.link(name), "up")
	run(t, "ip", "-n", ns, "addr", "add", l.addr(i, 2)+"/24", "dev", "eth0")
	run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", ns, "route", "add", "default", "via", l.addr(i, 1))
	if l.mtu > 0 {
		run(t, "ip", "-n", ns, "link", "set", "eth0", "mtu", fmt.Sprint(l.mtu))
		run(t, "ip", "-n", l.router, "link", "set", l.link(name), "mtu", fmt.Sprint(l.mtu))
	}
	l.hosts = append(l.hosts, name)
}

func (l *netLab) addr(subnet, host int) string {
	return fmt.Sprintf("10.%d.%d.%d", l.net, subnet, host)
}
func (l *netLab) ns(host string) string {
	return "vdcns" + l.id + "-" + strings.TrimPrefix(host, "host-")
}
func (l *netLab) link(host string) string { return "h" + strings.TrimPrefix(host, "host-") }
func (l *netLab) serverIP() string        { return l.addr(0, 1) }

func (l *netLab) hostIP(host string) string {
	var i int
	fmt.Sscan(strings.TrimPrefix(host, "host-"), &i)
	return l.addr(i, 2)
}

var (
	wanemuOnce sync.Once
	wanemuBin  string
	wanemuErr  error
)

// wan makes every path between two hosts a WAN link: delay each way and
// a bandwidth limit (e.g. "50ms", "100mbit"); traffic with the server is
// left alone. The router sends host-to-host packets into a TUN device read
// by wanemu (test/wanemu), which delays and paces them and writes them to
// a second TUN device, from which the router forwards them on. (The netem
// qdisc would do the same, but not every kernel has it; this one does not.)
func (l *netLab) wan(delay, rate string) {
	t := l.t
	t.Helper()
	wanemuOnce.Do(func() {
		wanemuBin = filepath.Join(filepath.Dir(vdcBin), "wanemu")
		if out, err := exec.Command("go", "build", "-o", wanemuBin, "../wanemu").CombinedOutput(); err != nil {
			wanemuErr = fmt.Errorf("build wanemu: %v\n%s", err, out)
		}
	})
	if wanemuErr != nil {
		t.Fatal(wanemuErr)
	}
	for _, tun := range []string{"wan0", "wan1"} {
		run(t, "ip", "-n", l.router, "tuntap", "add", tun, "mode", "tun")
		run(t, "ip", "-n", l.router, "link", "set", tun, "up")
	}
	run(t, "ip", "-n", l.router, "route", "add", "default", "dev", "wan0", "table", "100")
	for i := range l.hosts {
		for j := range l.hosts {
			if i != j {
				run(t, "ip", "-n", l.router, "rule", "add", "iif", l.link(l.hosts[i]), "to", l.addr(j+1, 0)+"/24", "lookup", "100")
			}
		}
	}
	l.wanemu = startCmd(t, "wanemu", "ip", "netns", "exec", l.router, wanemuBin, "-in", "wan0", "-out", "wan1", "-delay", delay, "-rate", rate)
}

// cut takes a host off the network; restore brings it back.
func (l *netLab) cut(host string) {
	run(l.t, "ip", "-n", l.router, "link", "set", l.link(host), "down")
}
func (l *netLab) restore(host string) {
	run(l.t, "ip", "-n", l.router, "link", "set", l.link(host), "up")
}

// removeUpLab removes the lab network a vdc up on dataDir made for its
// hosts (as root with real VMs), killing what still runs in the hosts'
// namespaces (VMs, dnsmasq, lldpd outlive vdc up by design).
func removeUpLab(t *testing.T, dataDir string, hosts int) {
	l := lab.For(dataDir)
	for i := 1; i <= hosts; i++ {
		if pids, err := exec.Command("ip", "netns", "pids", l.Namespace(i)).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	if err := l.Remove(hosts); err != nil {
		t.Logf("remove the lab of %s: %v", dataDir, err)
	}
}
