package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// guestHas is what the guest itself says: vCPUs online and MemTotal (KiB).
func guestHas(t *testing.T, cl *cluster, vm string) (cpus int, memKiB int64) {
	t.Helper()
	out := strings.Fields(cl.vdc("vm", "exec", vm, "--", "/bin/sh", "-c", "cat /sys/devices/system/cpu/online; grep MemTotal /proc/meminfo"))
	if len(out) < 3 {
		t.Fatalf("guest of %s says %q", vm, out)
	}
	cpus = 1
	if i := strings.LastIndexAny(out[0], "-,"); i >= 0 {
		n, _ := strconv.Atoi(out[0][i+1:])
		cpus = n + 1
	}
	memKiB, _ = strconv.ParseInt(out[2], 10, 64)
	return cpus, memKiB
}

// tcpListeners lists the TCP ports a process listens on, from its own
// network namespace's tables and its file descriptors.
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 9 && f[3] == "0A" && inodes[f[9]] { // 0A: LISTEN
				out = append(out, table+" "+f[1])
			}
		}
	}
	return out
}

func qemuCmdline(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// CPU and memory hot-add on a running real VM, as vSphere's: the guest
// has the new vCPUs and memory online, removal is refused, and a live
// migration keeps them. Its VNC display is on no TCP port of the host and
// reaches a local viewer through vdc vm console --vnc.
func TestHotAddAndVNCConsoleRealVM(t *testing.T) {
	_, cl := newMigrationLab(t, 2)
	cl.vdc("vm", "create", "hot", "--memory", "256MiB", "--image", "test", "--host", "host-1",
		"--max-cpus", "4", "--max-memory", "1GiB", "--vnc", "--start")
	cl.waitGuest("hot")
	cpus0, mem0 := guestHas(t, cl, "hot")
	if cpus0 != 1 {
		t.Fatalf("the guest starts with %d vCPUs online", cpus0)
	}

	out := cl.vdc("vm", "update", "hot", "--cpus", "3", "--memory", "512MiB")
	t.Logf("%s", strings.TrimSpace(out))
	if !strings.Contains(out, "now has 3 vCPUs and 512 MiB") || !strings.Contains(out, "online") {
		t.Fatalf("vm update of a running VM says:\n%s", out)
	}
	cpus1, mem1 := guestHas(t, cl, "hot")
	if cpus1 != 3 || mem1-mem0 != 256<<10 {
		t.Fatalf("after the hot-add the guest has %d vCPUs and %d KiB, want 3 and %d+%d", cpus1, mem1, mem0, 256<<10)
	}
	if n := cl.vdc("vm", "exec", "hot", "--", "nproc"); n != "3\n" {
		t.Fatalf("nproc in the guest after the hot-add: %q", n)
	}
	if vm := cl.vm("hot"); vm.Spec.CPUs != 3 || vm.Spec.MemoryBytes != 512<<20 {
		t.Fatalf("spec after hot-add: %d vCPUs, %s", vm.Spec.CPUs, vm.Spec.MemoryBytes)
	}
	if out, err := cl.try("vm", "update", "hot", "--cpus", "2"); err == nil || !strings.Contains(out, "not removed") {
		t.Fatalf("vCPU hot-remove: %v\n%s", err, out)
	}

	// The display: a unix socket, no TCP port, as QEMU says.
	pids := qemuPIDs(t, "hot")
	if len(pids) != 1 {
		t.Fatalf("QEMU processes of hot: %v", pids)
	}
	if line := qemuCmdline(t, pids[0]); !strings.Contains(line, "-vnc unix:") {
		t.Fatalf("QEMU's VNC is not on a unix socket: %s", line)
	}
	if l := tcpListeners(t, pids[0]); len(l) != 0 {
		t.Fatalf("QEMU of hot listens on TCP: %v", l)
	}
	if vnc := cl.vm("hot").Status.VNC; !strings.HasPrefix(vnc, "unix:") {
		t.Fatalf("vm status says VNC %q", vnc)
	}

	// Live migration: the target is built with the hot-added hardware.
	cl.vdc("vm", "migrate", "hot", "--host", "host-2")
	if vm := cl.vm("hot"); vm.Spec.Host.Name != "host-2" {
		t.Fatalf("after migrate: on %s", vm.Spec.Host.Name)
	}
	if c, m := guestHas(t, cl, "hot"); c != 3 || m != mem1 {
		t.Fatalf("after the migration the guest has %d vCPUs and %d KiB, want 3 and %d", c, m, mem1)
	}
	cl.vdc("vm", "update", "hot", "--cpus", "4") // and it grows there too
	if c, _ := guestHas(t, cl, "hot"); c != 4 {
		t.Fatalf("after a hot-add on the target the guest has %d vCPUs", c)
	}

	// A local viewer's port, through the server.
	viewer := start(t, "vnc proxy", cl.env, "vm", "console", "hot", "--vnc", "--listen", "127.0.0.1:0")
	addrRE := regexp.MustCompile(`on (127\.0\.0\.1:\d+)`)
	var addr string
	eventually(t, 30*time.Second, "vdc vm console --vnc to print its address", func() bool {
		m := addrRE.FindStringSubmatch(viewer.out.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	banner := make([]byte, 12)
	if _, err := io.ReadFull(bufio.NewReader(conn), banner); err != nil {
		t.Fatalf("read the RFB banner: %v (proxy said %q)", err, viewer.out.String())
	}
	if !regexp.MustCompile(`^RFB 003\.00\d\n$`).Match(banner) {
		t.Fatalf("banner %q, want RFB 003.00x", banner)
	}
	// A viewer's port is loopback only.
	if out, err := cl.try("vm", "console", "hot", "--vnc", "--listen", "0.0.0.0:0"); err == nil || !strings.Contains(out, "loopback") {
		t.Fatalf("--listen 0.0.0.0: %v\n%s", err, out)
	}
}

// vdc __complete, as the shell scripts call it, offers the names the
// server has.
func TestShellCompletionAgainstTheServer(t *testing.T) {
	cl := newCluster(t)
	cl.inventory()
	cl.vdc("vm", "create", "web1", "--memory", "64MiB")
	cl.vdc("vm", "create", "web2", "--memory", "64MiB")
	cl.vdc("vm", "create", "db1", "--memory", "64MiB", "--disk", "1GiB", "--start")
	cl.vdc("vm", "snapshot", "create", "db1", "before-upgrade")
	words := func(args ...string) string {
		out := cl.vdc(append([]string{"__complete"}, args...)...)
		var w []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") {
				w = append(w, l)
			}
		}
		return strings.Join(w, " ")
	}
	if got := words("vm", "start", ""); got != "db1 web1 web2" {
		t.Fatalf("vdc vm start <Tab>: %q", got)
	}
	if got := words("vm", "stop", "w"); got != "web1 web2" {
		t.Fatalf("vdc vm stop w<Tab>: %q", got)
	}
	if got := words("vm", "migrate", "db1", "--host", ""); got != "host-1 host-2" {
		t.Fatalf("--host <Tab>: %q", got)
	}
	if got := words("vm", "snapshot", "revert", "db1", ""); got != "before-upgrade" {
		t.Fatalf("vdc vm snapshot revert db1 <Tab>: %q", got)
	}
	if got := words("vm", "migrate", "db1", "--datastore", ""); got != "datastore1" {
		t.Fatalf("--datastore <Tab>: %q", got)
	}
}
