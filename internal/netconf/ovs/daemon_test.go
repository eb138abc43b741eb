package ovs_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/netconf/ovs"
)

func pidOf(t *testing.T, dir, daemon string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, daemon+".pid"))
	if err != nil {
		t.Fatalf("pid file of %s: %v", daemon, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file of %s: %v", daemon, err)
	}
	return pid
}

// procStat is a process's parent and session (fields 4 and 6 of
// /proc/PID/stat).
func procStat(t *testing.T, pid int) (ppid, sid int) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("process %d: %v", pid, err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ppid, _ = strconv.Atoi(f[1])
	sid, _ = strconv.Atoi(f[3])
	return ppid, sid
}

func procNS(t *testing.T, pid int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st); err != nil {
		t.Fatalf("network namespace of %d: %v", pid, err)
	}
	return st.Ino
}

// The first Converge starts an ovsdb-server and an ovs-vswitchd in the
// backend's namespace, in sessions of their own and not children of the
// agent; a backend made later on the same directory (the agent
// restarted) uses them, restarting neither.
func TestDaemonsStartedInNamespaceAndAdopted(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newOVS(t, h0.NS)
	want := netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))},
		Ports: []netconf.Port{netconftest.NIC("vm-a", 0, "pg-x")}}
	netconftest.ConvergeClean(t, b, want)
	dir := b.Dir()
	pids := map[string]int{}
	for _, d := range []string{"ovsdb-server", "ovs-vswitchd"} {
		pid := pidOf(t, dir, d)
		pids[d] = pid
		if got, wantNS := procNS(t, pid), nsInode(t, h0.NS); got != wantNS {
			t.Errorf("%s (pid %d) runs in network namespace %d, want the host's %d", d, pid, got, wantNS)
		}
		ppid, sid := procStat(t, pid)
		if ppid == os.Getpid() {
			t.Errorf("%s (pid %d) is a child of the agent", d, pid)
		}
		if sid != pid {
			t.Errorf("%s (pid %d) is in session %d, not one of its own", d, pid, sid)
		}
	}
	if dp, why := b.Datapath(); dp != ovs.DatapathSystem {
		t.Logf("datapath %s: %s", dp, why)
	}
	before := h0.Links(t)
	again := newOVS(t, h0.NS)
	netconftest.ConvergeClean(t, again, want)
	for d, pid := range pids {
		if got := pidOf(t, dir, d); got != pid {
			t.Errorf("a restarted agent restarted %s: pid %d, was %d", d, got, pid)
		}
	}
	if after := h0.Links(t); len(after) != len(before) {
		t.Errorf("a restarted agent changed the devices: %d, were %d", len(after), len(before))
	}
}

// A dead ovs-vswitchd is started again by the next Converge, which puts
// its bridges' flows back: traffic flows, with the policies.
func TestDeadVswitchdRestarted(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newOVS(t, h0.NS)
	a, c := netconftest.NIC("vm-a", 0, "pg-x"), netconftest.NIC("vm-c", 0, "pg-x")
	want := netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", netconftest.IsolatedGroup("pg-x"))},
		Ports: []netconf.Port{a, c}}
	netconftest.ConvergeClean(t, b, want)
	ta, tc := h0.OpenTap(t, a.Tap), h0.OpenTap(t, c.Tap)
	netconftest.Deliver(t, 60, ta, []*netconftest.Tap{tc}, nil)
	pid := pidOf(t, b.Dir(), "ovs-vswitchd")
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, pid)
	netconftest.ConvergeClean(t, b, want)
	if got := pidOf(t, b.Dir(), "ovs-vswitchd"); got == pid {
		t.Fatalf("ovs-vswitchd still has pid %d", pid)
	}
	netconftest.Deliver(t, 60, ta, []*netconftest.Tap{tc}, nil)
	other := net6(0xee)
	netconftest.Blocked(t, netconftest.NewFrame(60).From(other), netconftest.NewFrame(60).From(a.MAC), ta, []*netconftest.Tap{tc})
}

func net6(b byte) []byte { return []byte{0x52, 0x54, 0, b, b, b} }

func waitExit(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exit within 10s", pid)
		}
		time.Sleep(20 * time.Millisecond) // polling an observable condition with a deadline
	}
}

// A directory whose daemons run in another namespace is refused: it is
// another host's.
func TestDirOfAnotherNamespaceRefused(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 2})
	h0, h1 := lab.Hosts[0], lab.Hosts[1]
	b0 := newOVS(t, h0.NS)
	// The daemons start with the first ovs switch.
	want := netconf.Host{Switches: []netconf.Switch{{ID: "sw1", Name: "sw1", PortGroups: []netconf.PortGroup{{ID: "pg1", Name: "lab", Isolated: true}}}}}
	netconftest.ConvergeClean(t, b0, want)
	b1, err := ovs.New(ovs.Options{NetNS: h1.NS, Dir: b0.Dir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer b1.Close()
	_, err = b1.Converge(t.Context(), want)
	if err == nil || !strings.Contains(err.Error(), "another network namespace") {
		t.Fatalf("converge on another host's directory: %v", err)
	}
}

// vsctl runs ovs-vsctl on a backend's database, for tests.
func vsctl(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return ovsTool(t, dir, "ovs-vsctl", append([]string{"--db=unix:" + dir + "/db.sock", "--timeout=10"}, args...)...)
}

func ovsTool(t *testing.T, dir, tool string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Env = append(os.Environ(), "OVS_RUNDIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestNoDaemonsWithoutSwitches: a host with no ovs switch runs no Open
// vSwitch (every agent has the backend; few hosts use it).
func TestNoDaemonsWithoutSwitches(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	b := newOVS(t, lab.Hosts[0].NS)
	netconftest.ConvergeClean(t, b, netconf.Host{})
	if _, err := os.Stat(filepath.Join(b.Dir(), "ovsdb-server.pid")); err == nil {
		t.Fatal("an empty converge started ovsdb-server")
	}
}
