package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// newMigrationLab is two (or more) hosts, each in its own network
// namespace, running real VMs; the test guest is uploaded.
func newMigrationLab(t *testing.T, hosts int) (*netLab, *cluster) {
	needQEMU(t)
	lab := newNetLab(t, hosts)
	cl := newLabCluster(t, lab, true)
	cl.inventoryN(hosts)
	cl.vdc("image", "build-test")
	t.Cleanup(cl.killVMProcesses)
	return lab, cl
}

// cpuWatch samples the vCPU time of every QEMU process of a VM, to prove
// that two copies never run the guest at once.
type cpuWatch struct {
	mu      sync.Mutex
	overlap []string
	stop    chan struct{}
	done    chan struct{}
}

// vcpuTicks sums the CPU time of a process's vCPU threads (QEMU names them
// "CPU n/TCG" or "CPU n/KVM" with debug-threads=on).
func vcpuTicks(pid int) (int64, bool) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, false
	}
	var sum int64
	for _, e := range ents {
		comm, _ := os.ReadFile(filepath.Join(dir, e.Name(), "comm"))
		if !strings.HasPrefix(string(comm), "CPU ") {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join(dir, e.Name(), "stat"))
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		if len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			sum += u + s
		}
	}
	return sum, true
}

func watchCPU(t *testing.T, vm string) *cpuWatch {
	w := &cpuWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := map[int]int64{}
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			var running []string
			for _, pid := range qemuPIDs(t, vm) {
				ticks, ok := vcpuTicks(pid)
				if prev, seen := last[pid]; ok && seen && ticks > prev {
					running = append(running, strconv.Itoa(pid))
				}
				last[pid] = ticks
			}
			if len(running) > 1 {
				w.mu.Lock()
				w.overlap = append(w.overlap, strings.Join(running, "+"))
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// check stops the watch and fails if two copies ran in the same moment
// more than once (one 250 ms sample may straddle the switch-over).
func (w *cpuWatch) check(t *testing.T) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.overlap) > 1 {
		t.Fatalf("two QEMU processes ran the guest at once in %d samples: %v", len(w.overlap), w.overlap)
	}
}

// migrateResult is the result of the VM's latest migration task.
func (cl *cluster) migrateResult(vm string) api.MigrateResult {
	var tasks []*api.Task
	cl.json(&tasks, "task", "ls", "--target", vm)
	var res api.MigrateResult
	for _, tk := range tasks { // newest first
		if tk.Op == "vm.migrate" {
			json.Unmarshal(tk.Result, &res)
			break
		}
	}
	return res
}

func guestUptime(cl *cluster, vm string) float64 {
	out := cl.vdc("vm", "exec", vm, "--", "/bin/cat", "/proc/uptime")
	f, _ := strconv.ParseFloat(strings.Fields(out)[0], 64)
	return f
}

func TestLiveMigrationBetweenHosts(t *testing.T) {
	lab, cl := newMigrationLab(t, 2)
	cl.vdc("vm", "create", "mig", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--disk", "64MiB", "--start")
	cl.waitGuest("mig")
	cl.vdc("vm", "exec", "mig", "--", "/bin/sh", "-c", "echo memory-marker > /tmp/m; echo disk-marker | dd of=/dev/vda bs=512 seek=100 conv=fsync 2>/dev/null")
	before := guestUptime(cl, "mig")
	w := watchCPU(t, "mig")
	out := cl.vdc("vm", "migrate", "mig", "--host", "host-2")
	w.check(t)
	t.Logf("%s", strings.TrimSpace(out))
	vm := cl.vm("mig")
	if vm.Spec.Host.Name != "host-2" || vm.Status.PowerState != api.PowerOn {
		t.Fatalf("after migrate: %s on %s", vm.Status.PowerState, vm.Spec.Host.Name)
	}
	if pids := qemuPIDs(t, "mig"); len(pids) != 1 {
		t.Fatalf("want one QEMU process after the migration, found %v", pids)
	}
	if after := guestUptime(cl, "mig"); after < before {
		t.Fatalf("the guest rebooted: uptime %.1f, was %.1f", after, before)
	}
	if got := cl.vdc("vm", "exec", "mig", "--", "/bin/cat", "/tmp/m"); got != "memory-marker\n" {
		t.Fatalf("memory after migration: %q", got)
	}
	res := cl.migrateResult("mig")
	if !res.Live || res.TotalMs <= 0 || res.Transferred == 0 {
		t.Fatalf("migration result %+v", res)
	}

	// No shared storage: each host has its own datastore; the disk is
	// copied host to host while the VM runs.
	for i, h := range []string{"host-1", "host-2"} {
		dir := filepath.Join(cl.dir, fmt.Sprintf("local%d", i+1))
		os.MkdirAll(dir, 0o755)
		cl.vdc("datastore", "create", fmt.Sprintf("local%d", i+1), "--path", dir, "--host", h)
	}
	eventually(t, 30*time.Second, "local datastores reached", func() bool {
		var dss []*api.Datastore
		cl.json(&dss, "datastore", "ls")
		n := 0
		for _, ds := range dss {
			if strings.HasPrefix(ds.Metadata.Name, "local") && len(ds.Status.Hosts) == 1 {
				n++
			}
		}
		return n == 2
	})
	out = cl.vdc("vm", "migrate", "mig", "--datastore", "local2") // storage only, live, on host-2
	t.Logf("storage only: %s", strings.TrimSpace(out))
	if vm := cl.vm("mig"); vm.Spec.Disks[0].Datastore.Name != "local2" {
		t.Fatalf("disk on %s after a storage move", vm.Spec.Disks[0].Datastore.Name)
	}
	// No memory moved and nothing paused: it says what did move.
	if !strings.Contains(out, "moved disk0 to datastore local2") || !strings.Contains(out, " copied") ||
		strings.Contains(out, "downtime") || strings.Contains(out, "passes") || strings.Contains(out, "64 MiB copied") {
		t.Errorf("a move of the disks alone says: %s", out)
	}
	w = watchCPU(t, "mig")
	cl.vdc("vm", "migrate", "mig", "--host", "host-1", "--datastore", "local1")
	w.check(t)
	vm = cl.vm("mig")
	if vm.Spec.Host.Name != "host-1" || vm.Spec.Disks[0].Datastore.Name != "local1" {
		t.Fatalf("after migrating with storage: disk on %s, host %s", vm.Spec.Disks[0].Datastore.Name, vm.Spec.Host.Name)
	}
	if got := cl.vdc("vm", "exec", "mig", "--", "/bin/sh", "-c", "dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 11"); got != "disk-marker" {
		t.Fatalf("disk data after migrating with storage: %q", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(cl.dir, "local2")); len(ents) != 0 {
		t.Fatalf("the old disk stayed on local2: %v", names(ents))
	}

	// Across a WAN (50 ms each way, 100 Mbit/s), no shared storage,
	// compressed: the disk goes over NBD while memory follows.
	lab.wan("50ms", "100mbit")
	if rtt := pingRTT(t, lab, "host-1", lab.hostIP("host-2")); rtt < 100*time.Millisecond {
		t.Fatalf("the WAN is not slow: round trip %s", rtt)
	}
	w = watchCPU(t, "mig")
	out = cl.vdc("vm", "migrate", "mig", "--host", "host-2", "--datastore", "local2", "--compress", "zstd", "--auto-converge")
	w.check(t)
	t.Logf("WAN: %s", strings.TrimSpace(out))
	if !strings.Contains(out, "moved disk0 to datastore local2") || strings.Contains(out, "64 MiB copied") {
		t.Errorf("a migration with the disks of a thin disk holding a few blocks says: %s", out)
	}
	if vm := cl.vm("mig"); vm.Spec.Host.Name != "host-2" || vm.Spec.Disks[0].Datastore.Name != "local2" {
		t.Fatalf("WAN migration: on %s, disk on %s", vm.Spec.Host.Name, vm.Spec.Disks[0].Datastore.Name)
	}
	if got := cl.vdc("vm", "exec", "mig", "--", "/bin/cat", "/tmp/m"); got != "memory-marker\n" {
		t.Fatalf("memory after the WAN migration: %q", got)
	}
	if got := cl.vdc("vm", "exec", "mig", "--", "/bin/sh", "-c", "dd if=/dev/vda bs=512 skip=100 count=1 2>/dev/null | head -c 11"); got != "disk-marker" {
		t.Fatalf("disk data after the WAN migration: %q", got)
	}
}

// pingRTT is the round trip from a host to an address, as ping measures it.
func pingRTT(t *testing.T, lab *netLab, from, to string) time.Duration {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", lab.ns(from), "ping", "-c", "3", "-i", "0.2", "-q", to).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", to, from, err, out)
	}
	// rtt min/avg/max/mdev = 100.2/100.4/100.6/0.1 ms
	_, stats, _ := strings.Cut(string(out), " = ")
	var avg float64
	if f := strings.Split(stats, "/"); len(f) > 1 {
		avg, _ = strconv.ParseFloat(f[1], 64)
	}
	return time.Duration(avg * float64(time.Millisecond))
}

func TestMigrationFaultsLeaveTheVMOnTheSource(t *testing.T) {
	lab, cl := newMigrationLab(t, 2)
	cl.vdc("vm", "create", "f1", "--memory", "256MiB", "--image", "test", "--disk", "64MiB", "--host", "host-1", "--start")
	cl.waitGuest("f1")
	ctx := context.Background()
	start := time.Now()
	slow := func() string { // a migration slow enough to break in the middle
		return strings.TrimSpace(cl.vdc("vm", "migrate", "f1", "--host", "host-2", "--max-bandwidth", "2MiB", "--async"))
	}
	expectOnSource := func(what, id string) {
		t.Helper()
		tk, _ := cl.c.WaitTask(ctx, id, nil)
		if tk == nil || tk.State == api.TaskSucceeded {
			t.Fatalf("%s: the migration did not fail: %+v", what, tk)
		}
		t.Logf("%s (after %s): task %s: %v", what, time.Since(start).Round(time.Second), tk.State, tk.Error)
		vm := cl.vm("f1")
		if vm.Spec.Host.Name != "host-1" || vm.Status.PowerState != api.PowerOn {
			t.Fatalf("%s: the VM is %s on %s", what, vm.Status.PowerState, vm.Spec.Host.Name)
		}
		eventually(t, 30*time.Second, what+": only the source QEMU left", func() bool { return len(qemuPIDs(t, "f1")) == 1 })
		if out := cl.vdc("vm", "exec", "f1", "--", "/bin/echo", "alive"); out != "alive\n" {
			t.Fatalf("%s: the guest does not answer: %q", what, out)
		}
	}
	waitSending := func(id string) {
		eventually(t, 30*time.Second, "the migration sending", func() bool {
			tk, _ := cl.c.GetTask(ctx, id)
			return tk != nil && tk.State == api.TaskRunning && strings.Contains(tk.Message, "memory")
		})
	}

	// Cancel.
	id := slow()
	waitSending(id)
	cl.vdc("task", "cancel", id)
	expectOnSource("cancel", id)

	// The target's QEMU dies.
	id = slow()
	waitSending(id)
	for _, pid := range qemuPIDs(t, "f1") {
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); strings.Contains(string(cmd), "incoming") {
			p, _ := os.FindProcess(pid)
			p.Kill()
		}
	}
	expectOnSource("target QEMU killed", id)

	// The network between the hosts is cut.
	id = slow()
	waitSending(id)
	lab.cut("host-2")
	if tk, _ := cl.c.WaitTask(ctx, id, nil); tk == nil || tk.State != api.TaskFailed {
		t.Fatalf("network cut: the migration did not fail: %+v", tk)
	}
	// Back on the network, host-2 throws away the copy it was receiving.
	lab.restore("host-2")
	cl.waitConnected("host-2")
	expectOnSource("network cut", id)

	// A small datastore for host-2, mounted before its agent starts again
	// below (ip netns exec gives the agent its own mount namespace).
	small := filepath.Join(cl.dir, "small2")
	os.MkdirAll(small, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", small).Run() })

	// The target's agent dies: the host stops sending heartbeats, the
	// migration stops; the agent, started again, throws the copy away.
	id = slow()
	waitSending(id)
	cl.agents["host-2"].kill9()
	if tk, _ := cl.c.WaitTask(ctx, id, nil); tk == nil || tk.State != api.TaskFailed {
		t.Fatalf("target agent killed: the migration did not fail: %+v", tk)
	}
	cl.startAgent("host-2")
	cl.waitConnected("host-2")
	expectOnSource("target agent killed", id)

	// The target datastore fills up while the disk is copied to it.
	cl.vdc("datastore", "create", "small2", "--path", small, "--host", "host-2")
	eventually(t, 30*time.Second, "host-2 measures small2", func() bool {
		ds, err := client.Get[*api.Datastore](ctx, cl.c, api.KindDatastore, "small2")
		return err == nil && len(ds.Status.Hosts) == 1 && ds.Status.CapacityBytes > 0
	})
	// 24 MiB of data on the disk take 24 s to copy at 1 MiB/s.
	cl.vdc("vm", "exec", "f1", "--", "/bin/sh", "-c", "dd if=/dev/urandom of=/dev/vda bs=1M seek=1 count=24 conv=fsync")
	id = strings.TrimSpace(cl.vdc("vm", "migrate", "f1", "--host", "host-2", "--datastore", "small2", "--max-bandwidth", "1MiB", "--async"))
	var last *api.Task
	eventually(t, 30*time.Second, "the disk copy", func() bool {
		last, _ = cl.c.GetTask(ctx, id)
		if last != nil && api.TaskDone(last.State) {
			t.Fatalf("the migration to small2 ended before the disk copy was seen: %+v", last)
		}
		return last != nil && strings.Contains(last.Message, "disks")
	})
	filler := filepath.Join(small, "filler")
	exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=1M").Run() // until the datastore is full
	expectOnSource("target datastore full", id)
	if tk, _ := cl.c.GetTask(ctx, id); tk == nil || tk.Error == nil || !strings.Contains(tk.Error.Message, "small2 is full") {
		ds, _ := client.Get[*api.Datastore](ctx, cl.c, api.KindDatastore, "small2")
		out, _ := exec.Command("df", small).CombinedOutput()
		t.Fatalf("the failure does not name the full datastore: %v (small2: %+v)\n%s", tk.Error, ds.Status, out)
	}
	if ents, _ := os.ReadDir(small); len(ents) != 1 {
		t.Fatalf("the failed copy left files on small2: %v", names(ents))
	}
	os.Remove(filler)
	eventually(t, 30*time.Second, "host-2 reports the space freed on small2", func() bool {
		ds, err := client.Get[*api.Datastore](ctx, cl.c, api.KindDatastore, "small2")
		return err == nil && ds.Status.FreeBytes > 64<<20
	})

	// A retry works, with the disk copied to small2.
	w := watchCPU(t, "f1")
	cl.vdc("vm", "migrate", "f1", "--host", "host-2", "--datastore", "small2")
	w.check(t)
	if vm := cl.vm("f1"); vm.Spec.Host.Name != "host-2" || vm.Spec.Disks[0].Datastore.Name != "small2" {
		t.Fatalf("retry: on %s, disk on %s", vm.Spec.Host.Name, vm.Spec.Disks[0].Datastore.Name)
	}
	if pids := qemuPIDs(t, "f1"); len(pids) != 1 {
		t.Fatalf("after the retry: QEMU processes %v", pids)
	}
}

func TestMaintenanceEvacuatesRealVMs(t *testing.T) {
	_, cl := newMigrationLab(t, 2)
	cl.vdc("vm", "create", "r1", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start")
	cl.vdc("vm", "create", "r2", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start")
	cl.vdc("vm", "create", "r3", "--memory", "256MiB", "--image", "test", "--host", "host-1")
	cl.waitGuest("r1")
	cl.waitGuest("r2")
	cl.vdc("host", "maintenance", "enter", "host-1")
	h := cl.hosts()["host-1"]
	if !h.Spec.Maintenance || h.Status.VMs != 0 {
		t.Fatalf("host-1: maintenance %v with %d VMs", h.Spec.Maintenance, h.Status.VMs)
	}
	for _, name := range []string{"r1", "r2", "r3"} {
		if vm := cl.vm(name); vm.Spec.Host.Name != "host-2" {
			t.Fatalf("%s stayed on %s", name, vm.Spec.Host.Name)
		}
	}
	cl.waitGuest("r1")
	cl.vdc("host", "maintenance", "exit", "host-1")
}

func TestServerKilledDuringMigration(t *testing.T) {
	_, cl := newMigrationLab(t, 2)
	ctx := context.Background()
	cl.vdc("vm", "create", "k1", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start")
	cl.waitGuest("k1")
	id := strings.TrimSpace(cl.vdc("vm", "migrate", "k1", "--host", "host-2", "--max-bandwidth", "8MiB", "--async"))
	eventually(t, 30*time.Second, "the migration sending", func() bool {
		tk, _ := cl.c.GetTask(ctx, id)
		return tk != nil && strings.Contains(tk.Message, "memory")
	})
	cl.server.kill9()
	// The server stays away for 2 s while the migration goes on: the
	// outage is the test's input, not a wait for something.
	time.Sleep(2 * time.Second)
	cl.startServer()
	tk, _ := cl.c.WaitTask(ctx, id, nil)
	if tk == nil || !api.TaskDone(tk.State) {
		t.Fatalf("the migration task did not end after the server restart: %+v", tk)
	}
	vm := cl.vm("k1")
	pids := qemuPIDs(t, "k1")
	t.Logf("after the server restart: task %s, VM on %s, %d QEMU processes", tk.State, vm.Spec.Host.Name, len(pids))
	eventually(t, 30*time.Second, "one QEMU process", func() bool { return len(qemuPIDs(t, "k1")) == 1 })
	// Where the inventory says it runs, it really runs.
	out, err := exec1(cl, "k1")
	if err != nil || out != "here\n" {
		t.Fatalf("the VM does not answer where the inventory says (%s): %v %q", vm.Spec.Host.Name, err, out)
	}

	// The source's agent is killed mid-migration: QEMU goes on sending,
	// and the agent, started again, follows the migration it did not
	// start, to its end.
	from, to := vm.Spec.Host.Name, "host-1"
	if from == "host-1" {
		to = "host-2"
	}
	id = strings.TrimSpace(cl.vdc("vm", "migrate", "k1", "--host", to, "--max-bandwidth", "8MiB", "--async"))
	eventually(t, 30*time.Second, "the migration sending", func() bool {
		tk, _ := cl.c.GetTask(ctx, id)
		return tk != nil && strings.Contains(tk.Message, "memory")
	})
	cl.agents[from].kill9()
	cl.startAgent(from)
	tk, _ = cl.c.WaitTask(ctx, id, nil)
	if tk == nil || tk.State != api.TaskSucceeded {
		t.Fatalf("the migration did not complete after its source agent restarted: %+v", tk)
	}
	if vm := cl.vm("k1"); vm.Spec.Host.Name != to || vm.Status.PowerState != api.PowerOn {
		t.Fatalf("after the source agent restarted: %s on %s", vm.Status.PowerState, vm.Spec.Host.Name)
	}
	eventually(t, 30*time.Second, "one QEMU process", func() bool { return len(qemuPIDs(t, "k1")) == 1 })
	if out, err := exec1(cl, "k1"); err != nil || out != "here\n" {
		t.Fatalf("the VM does not answer on %s: %v %q", to, err, out)
	}
}

func exec1(cl *cluster, vm string) (string, error) {
	return cl.try("vm", "exec", vm, "--", "/bin/echo", "here")
}
