package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/qga"
)

// The network benchmark of docs/PERFORMANCE.md (issue 13):
//
//	VDC_BENCH=1 go test -count=1 -timeout 60m -run BenchNetwork -v ./test/e2e
//
// For each switch backend, on real QEMU test guests (192 MiB, TCG here):
// VM-to-VM throughput (an HTTP download of benchBytes between busybox's
// httpd and wget) and latency (ping), on one host and across two hosts
// on a VXLAN port group; the same two QEMUs on one host with their taps
// moved to a plain Linux bridge made by hand, no vdc rules (bridge
// backend only: the baseline); a ping every 10 ms across a live
// migration (lost, longest gap); and the time a host that joins later
// takes to realize 100 port groups.
func TestBenchNetwork(t *testing.T) {
	needBench(t)
	for _, backend := range []string{api.BackendBridge, api.BackendOVS} {
		t.Run(backend, func(t *testing.T) { benchNetwork(t, backend) })
	}
}

const benchBytes = 32 << 20

func benchNetwork(t *testing.T, backend string) {
	lab, cl := newSwitchLab(t, 3, backend)
	cl.vdc("portgroup", "create", "bench", "--switch", "dvs1", "--vxlan", "6001")
	cl.waitRealized("dvs1", 3)
	cl.netVM("srv", "host-1", "bench", "192.168.70.1")
	cl.netVM("near", "host-1", "bench", "192.168.70.2")
	cl.netVM("far", "host-2", "bench", "192.168.70.3")
	cl.vdc("vm", "exec", "srv", "--", "/bin/sh", "-c",
		fmt.Sprintf("mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/f bs=1M count=%d 2>/dev/null && httpd -p 8080 -h /tmp/www", benchBytes>>20))
	for _, c := range []struct{ what, vm string }{{"one host", "near"}, {"two hosts (VXLAN)", "far"}} {
		run := func(args ...string) string { return cl.vdc(append([]string{"vm", "exec", c.vm, "--"}, args...)...) }
		mbit, rtt := guestThroughput(t, run, "192.168.70.1"), guestRTT(t, run, "192.168.70.1")
		t.Logf("RESULT %s %s: %.0f Mbit/s, round trip %.3f ms", backend, c.what, mbit, rtt)
	}
	pingAcrossMigration(t, cl, backend)
	realize100(t, lab, cl, backend)
	if backend == api.BackendBridge {
		handBridgeBaseline(t, lab, cl) // last: it stops host-1's agent
	}
}

// guestThroughput is the Mbit/s of an HTTP download of (up to)
// benchBytes from addr, stopped after 20 s, timed in the guest that run
// runs commands in (/proc/uptime: 10 ms steps); the best of three.
func guestThroughput(t *testing.T, run func(args ...string) string, addr string) float64 {
	t.Helper()
	best := 0.0
	for range 3 {
		out := run("/bin/sh", "-c", "read a _ </proc/uptime; n=$(timeout 20 wget -q -O - http://"+addr+":8080/f | wc -c); "+
			"read b _ </proc/uptime; echo $a $b $n")
		f := strings.Fields(out)
		if len(f) != 3 {
			t.Fatalf("download from %s: %q", addr, out)
		}
		a, _ := strconv.ParseFloat(f[0], 64)
		b, _ := strconv.ParseFloat(f[1], 64)
		n, _ := strconv.ParseFloat(f[2], 64)
		if b <= a {
			t.Fatalf("download from %s took no time: %q", addr, out)
		}
		best = max(best, n*8/(b-a)/1e6)
	}
	return best
}

var rttRE = regexp.MustCompile(`min/avg/max = [0-9.]+/([0-9.]+)/`)

// guestRTT is the average round trip of 20 pings to addr, in ms.
func guestRTT(t *testing.T, run func(args ...string) string, addr string) float64 {
	t.Helper()
	out := run("/bin/ping", "-c", "20", "-i", "0.2", addr)
	m := rttRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ping %s: %s", addr, out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

var seqRE = regexp.MustCompile(`seq=(\d+) `)

// pingAcrossMigration pings far from near every 10 ms while far moves
// from host-2 to host-3, and reports the pings lost and the longest gap.
func pingAcrossMigration(t *testing.T, cl *cluster, backend string) {
	t.Helper()
	const count = 4000 // 40 s
	out := make(chan string, 1)
	go func() {
		o, _ := cl.try("vm", "exec", "near", "--timeout", "5m", "--", "/bin/sh", "-c",
			fmt.Sprintf("ping -c %d -i 0.01 -W 1 192.168.70.3 > /tmp/ping.out; cat /tmp/ping.out", count))
		out <- o
	}()
	eventually(t, 30*time.Second, "the pings from near to start", func() bool {
		o, err := cl.try("vm", "exec", "near", "--", "/bin/cat", "/tmp/ping.out")
		return err == nil && strings.Contains(o, "seq=10 ")
	})
	start := time.Now()
	cl.vdc("vm", "migrate", "far", "--host", "host-3")
	took := time.Since(start)
	o := <-out
	seen := map[int]bool{}
	for _, m := range seqRE.FindAllStringSubmatch(o, -1) {
		n, _ := strconv.Atoi(m[1])
		seen[n] = true
	}
	gap, run := 0, 0
	for i := range count {
		if seen[i] {
			run = 0
			continue
		}
		run++
		gap = max(gap, run)
	}
	t.Logf("RESULT %s ping every 10 ms across a live migration (%.1f s): %d of %d lost, longest gap %d ms",
		backend, took.Seconds(), count-len(seen), count, gap*10)
}

// realize100 makes 100 more port groups on the switch, then has a fourth
// host join: the time until it reports them all realized.
func realize100(t *testing.T, lab *netLab, cl *cluster, backend string) {
	t.Helper()
	start := time.Now()
	for i := range 100 {
		cl.vdc("portgroup", "create", fmt.Sprintf("pg%03d", i), "--switch", "dvs1", "--vxlan", strconv.Itoa(7000+i))
	}
	made := time.Since(start)
	start = time.Now()
	realized := func(host string, n int) bool {
		var sw api.Switch
		cl.json(&sw, "switch", "info", "dvs1")
		ok := 0
		for _, h := range sw.Status.Hosts {
			if (host == "" || h.Host.Name == host) && h.State == api.RealizedOK {
				ok++
			}
		}
		return ok == n
	}
	eventually(t, 20*time.Minute, "3 hosts realize 101 port groups", func() bool { return realized("", 3) })
	existing := time.Since(start)
	lab.addHost("host-4")
	token := strings.TrimSpace(cl.vdc("host", "token", "create", "--uses", "1"))
	start = time.Now()
	cl.startAgentToken("host-4", token)
	cl.waitConnected("host-4")
	joined := time.Since(start)
	eventually(t, 20*time.Minute, "host-4 realizes 101 port groups", func() bool { return realized("host-4", 1) })
	t.Logf("RESULT %s 100 port groups: created in %.1f s, realized on 3 hosts %.1f s later; a joining host connected in %.1f s and realized all 101 %.1f s after starting",
		backend, made.Seconds(), existing.Seconds(), joined.Seconds(), time.Since(start).Seconds())
}

// handBridgeBaseline measures near and srv, the same two QEMUs, with
// their taps on a plain Linux bridge made by hand and none of vdc's
// rules: host-1's agent is stopped (its VMs run on), vdc's nftables
// tables and tc qdiscs go, and the commands reach the guest through its
// QEMU guest agent socket directly.
func handBridgeBaseline(t *testing.T, lab *netLab, cl *cluster) {
	t.Helper()
	ns := lab.ns("host-1")
	var taps []string
	for _, vm := range []string{"srv", "near"} {
		taps = append(taps, netconf.TapName(cl.vm(vm).Metadata.ID, 0))
	}
	cl.agents["host-1"].kill9()
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", "brhand", "type", "bridge")
	ip("link", "set", "brhand", "up")
	for _, tap := range taps {
		ip("link", "set", tap, "nomaster")
		ip("link", "set", tap, "master", "brhand")
		_ = exec.Command("tc", "-n", ns, "qdisc", "del", "dev", tap, "root").Run()
		_ = exec.Command("tc", "-n", ns, "qdisc", "del", "dev", tap, "ingress").Run()
	}
	for _, table := range []string{"vdc", "vdc-dhcp"} {
		_ = exec.Command("ip", "netns", "exec", ns, "nft", "delete", "table", "bridge", table).Run()
	}
	run := qgaRunner(t, "near")
	mbit, rtt := guestThroughput(t, run, "192.168.70.1"), guestRTT(t, run, "192.168.70.1")
	t.Logf("RESULT hand-made Linux bridge, one host: %.0f Mbit/s, round trip %.3f ms", mbit, rtt)
}

var qgaSockRE = regexp.MustCompile(`path=([^, ]*qga\.sock)`)

// qgaRunner runs commands in a VM through its QEMU guest agent socket,
// as vdc's agent does, for when no agent runs.
func qgaRunner(t *testing.T, vm string) func(args ...string) string {
	pids := qemuPIDs(t, vm)
	if len(pids) != 1 {
		t.Fatalf("QEMU processes of %s: %v", vm, pids)
	}
	m := qgaSockRE.FindStringSubmatch(qemuCmdline(t, pids[0]))
	if m == nil {
		t.Fatalf("no guest agent socket on the command line of %s", vm)
	}
	return func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		c, err := qga.Dial(ctx, m[1])
		if err != nil {
			t.Fatalf("guest agent of %s: %v", vm, err)
		}
		defer c.Close()
		res, err := c.Exec(ctx, qga.ExecRequest{Path: args[0], Args: args[1:]})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("%s in %s: %v (exit %d)\n%s%s", strings.Join(args, " "), vm, err, res.ExitCode, res.Stdout, res.Stderr)
		}
		return string(res.Stdout)
	}
}
