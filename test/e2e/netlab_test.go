package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// netLab is a small network of hosts on this machine: each host a network
// namespace with its own address, all on one bridge whose address the
// server uses. What crosses between hosts really crosses a network (and
// can be delayed, limited or cut).
type netLab struct {
	t      *testing.T
	id     string // unique per lab: names of the bridge, namespaces, links
	subnet string // 10.N.M
	bridge string
	hosts  []string // host names, in order
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
	if why == "" {
		return
	}
	if os.Getenv("VDC_REQUIRE_E2E") == "1" {
		t.Fatalf("%s, and VDC_REQUIRE_E2E=1", why)
	}
	t.Skip(why)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newNetLab makes n hosts named host-1..host-n.
func newNetLab(t *testing.T, n int) *netLab {
	needNetLab(t)
	l := &netLab{t: t, id: fmt.Sprintf("%04x", rand.IntN(0xffff))}
	l.subnet = fmt.Sprintf("10.%d.%d", 100+rand.IntN(100), rand.IntN(250))
	l.bridge = "vdcbr" + l.id
	run(t, "ip", "link", "add", l.bridge, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", l.bridge).Run() })
	run(t, "ip", "addr", "add", l.subnet+".1/24", "dev", l.bridge)
	run(t, "ip", "link", "set", l.bridge, "up")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("host-%d", i)
		ns, out, in := l.ns(name), l.veth(name), "vdcin"+l.id
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() {
			// Whatever still runs in the namespace (VMs outlive agents) goes first.
			if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
				for _, p := range strings.Fields(string(pids)) {
					var pid int
					fmt.Sscan(p, &pid)
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			exec.Command("ip", "netns", "del", ns).Run()
		})
		run(t, "ip", "link", "add", out, "type", "veth", "peer", "name", in)
		run(t, "ip", "link", "set", in, "netns", ns)
		run(t, "ip", "link", "set", out, "master", l.bridge, "up")
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
		run(t, "ip", "-n", ns, "link", "set", in, "name", "eth0")
		run(t, "ip", "-n", ns, "addr", "add", l.ip(i)+"/24", "dev", "eth0")
		run(t, "ip", "-n", ns, "link", "set", "eth0", "up")
		l.hosts = append(l.hosts, name)
	}
	return l
}

func (l *netLab) ns(host string) string   { return "vdcns" + l.id + strings.TrimPrefix(host, "host-") }
func (l *netLab) veth(host string) string { return "vdcv" + l.id + strings.TrimPrefix(host, "host-") }
func (l *netLab) serverIP() string        { return l.subnet + ".1" }
func (l *netLab) ip(i int) string         { return fmt.Sprintf("%s.%d", l.subnet, 10+i) }

func (l *netLab) hostIP(host string) string {
	var i int
	fmt.Sscan(strings.TrimPrefix(host, "host-"), &i)
	return l.ip(i)
}

// wan makes a host's link slow: delay each way and a bandwidth limit.
func (l *netLab) wan(host, delay, rate string) {
	run(l.t, "tc", "qdisc", "replace", "dev", l.veth(host), "root", "netem", "delay", delay, "rate", rate)
	run(l.t, "ip", "netns", "exec", l.ns(host), "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", delay, "rate", rate)
}

// cut takes a host off the network; restore brings it back.
func (l *netLab) cut(host string)     { run(l.t, "ip", "link", "set", l.veth(host), "down") }
func (l *netLab) restore(host string) { run(l.t, "ip", "link", "set", l.veth(host), "up") }
