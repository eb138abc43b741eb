package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/lease"
)

// procWatch counts a VM's QEMU processes every 100 ms, as an operator
// would with ps: at no moment may there be two.
type procWatch struct {
	mu    sync.Mutex
	twice []string
	stop  chan struct{}
	done  chan struct{}
}

func watchProcs(t *testing.T, vm string) *procWatch {
	w := &procWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if pids := qemuPIDs(t, vm); len(pids) > 1 {
				w.mu.Lock()
				w.twice = append(w.twice, fmt.Sprint(pids))
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *procWatch) check(t *testing.T, vm string) {
	t.Helper()
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.twice) > 0 {
		t.Fatalf("vm %s ran in two QEMU processes at once, %d times: %v", vm, len(w.twice), w.twice)
	}
}

// pidNamespace says which host's network namespace a process is in.
func (l *netLab) hostOf(t *testing.T, pid int) string {
	for _, h := range l.hosts {
		out, _ := exec.Command("ip", "netns", "pids", l.ns(h)).Output()
		for _, f := range strings.Fields(string(out)) {
			if f == strconv.Itoa(pid) {
				return h
			}
		}
	}
	return ""
}

// crash kills every process of a host at once: its agent and its VMs.
func (l *netLab) crash(t *testing.T, host string) {
	out, _ := exec.Command("ip", "netns", "pids", l.ns(host)).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func (cl *cluster) tasks(op, target string) []*api.Task {
	var all []*api.Task
	cl.json(&all, "task", "ls", "--target", target)
	var out []*api.Task
	for _, tk := range all {
		if tk.Op == op {
			out = append(out, tk)
		}
	}
	return out
}

// runsOn waits until the VM runs, its guest answering, on a host other
// than from, and returns that host.
func (cl *cluster) restartedAwayFrom(vm, from string) string {
	var at string
	eventually(cl.t, 3*time.Minute, vm+" restarted away from "+from, func() bool {
		v := cl.vm(vm)
		at = v.Spec.Host.Name
		return at != from && v.Status.PowerState == api.PowerOn
	})
	cl.waitGuest(vm)
	return at
}

// A host dies with its VMs: HA restarts them on the other hosts, the
// higher priority first, and each runs once.
func TestHARestartsTheVMsOfACrashedHost(t *testing.T) {
	lab, cl := newMigrationLab(t, 3)
	cl.vdc("cluster", "update", "cluster1", "--ha", "on", "--ha-failure-detection", "5s")
	for _, v := range []struct{ name, prio string }{{"crash-hi", "high"}, {"crash-lo", "low"}} {
		cl.vdc("vm", "create", v.name, "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start", "--ha-priority", v.prio)
	}
	for _, v := range []string{"crash-hi", "crash-lo"} {
		cl.waitGuest(v)
	}
	t0 := time.Now()
	lab.crash(t, "host-1")
	for _, v := range []string{"crash-hi", "crash-lo"} {
		to := cl.restartedAwayFrom(v, "host-1")
		pids := qemuPIDs(t, v)
		if len(pids) != 1 || lab.hostOf(t, pids[0]) != to {
			t.Fatalf("%s: QEMU processes %v, want one on %s", v, pids, to)
		}
		t.Logf("%s runs on %s again, guest answering, %.1f s after the crash", v, to, time.Since(t0).Seconds())
	}
	if h := cl.hosts()["host-1"]; h.Status.FailedAt.IsZero() {
		t.Fatal("host-1 is not shown failed")
	}
	hi, lo := cl.tasks("vm.ha-restart", "crash-hi"), cl.tasks("vm.ha-restart", "crash-lo")
	if len(hi) != 1 || len(lo) != 1 || hi[0].State != api.TaskSucceeded || lo[0].State != api.TaskSucceeded {
		t.Fatalf("restart tasks: %v %v", hi, lo)
	}
	if !hi[0].Finished.Before(*lo[0].Started) {
		t.Fatalf("the low-priority VM started (%v) before the high one was on (%v)", lo[0].Started, hi[0].Finished)
	}
}

// A host cut off from the network (server and gateway) powers its
// protected VMs off before the server restarts them elsewhere; their
// leases make a second copy impossible anyway. Back on the network, it
// does not run them again.
func TestHAIsolatedHostFencesItselfAndNothingRunsTwice(t *testing.T) {
	lab, cl := newMigrationLab(t, 3)
	cl.vdc("cluster", "update", "cluster1", "--ha", "on", "--ha-failure-detection", "6s")
	cl.vdc("vm", "create", "iso", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start")
	cl.waitGuest("iso")
	id := cl.vm("iso").Metadata.ID
	w := watchProcs(t, "iso")
	lab.cut("host-1")
	to := cl.restartedAwayFrom("iso", "host-1")
	lab.restore("host-1")
	cl.waitConnected("host-1")
	eventually(t, 30*time.Second, "host-1's isolation response on record", func() bool {
		fenced := cl.tasks("vm.isolation-response", "iso")
		return len(fenced) == 1 && fenced[0].Owner == "host host-1"
	})
	eventually(t, 30*time.Second, "host-1 forgets the VM that runs on "+to, func() bool {
		_, err := os.Stat(filepath.Join(cl.dir, "hosts", "host-1", "vms", id))
		return os.IsNotExist(err)
	})
	cl.heartbeats(3, "host-1")
	w.check(t, "iso")
	if pids := qemuPIDs(t, "iso"); len(pids) != 1 || lab.hostOf(t, pids[0]) != to {
		t.Fatalf("QEMU processes of iso: %v, want one on %s", pids, to)
	}
	if v := cl.vm("iso"); v.Spec.Host.Name != to || v.Status.PowerState != api.PowerOn {
		t.Fatalf("iso is %s on %s", v.Status.PowerState, v.Spec.Host.Name)
	}
}

// With the isolation response "leave running", a cut-off host keeps its
// VM and its lease: the restart elsewhere is refused by the lease, so the
// VM never runs twice even though the server took the host for dead.
func TestHALeaseRefusesASecondCopy(t *testing.T) {
	lab, cl := newMigrationLab(t, 2)
	cl.vdc("cluster", "update", "cluster1", "--ha", "on", "--ha-failure-detection", "4s", "--ha-isolation-response", "leave-running")
	cl.vdc("vm", "create", "stay", "--memory", "256MiB", "--image", "test", "--host", "host-2", "--start")
	cl.waitGuest("stay")
	// The lease moves with a live migration: host-2's QEMU lets go of it
	// at the switch-over, host-1's takes it.
	cl.vdc("vm", "migrate", "stay", "--host", "host-1")
	held, who, err := lease.Held(lease.Path(filepath.Join(cl.dir, "datastore1"), cl.vm("stay").Metadata.ID))
	if err != nil || !held || !strings.Contains(who, "vm stay on host host-1") {
		t.Fatalf("lease after the migration: held=%v by %q (%v)", held, who, err)
	}
	w := watchProcs(t, "stay")
	before := qemuPIDs(t, "stay")
	lab.cut("host-1")
	eventually(t, 2*time.Minute, "a refused restart of stay", func() bool {
		for _, tk := range cl.tasks("vm.ha-restart", "stay") {
			if tk.State == api.TaskFailed && tk.Error != nil && strings.Contains(tk.Error.Message, "held by another running copy") {
				t.Logf("refused: %s", tk.Error.Message)
				return true
			}
		}
		return false
	})
	lab.restore("host-1")
	cl.waitConnected("host-1")
	eventually(t, time.Minute, "stay on host-1 again, and the failover over", func() bool {
		v := cl.vm("stay")
		fo := cl.tasks("host.failover", "host-1")
		return v.Spec.Host.Name == "host-1" && v.Status.PowerState == api.PowerOn && len(fo) == 1 && api.TaskDone(fo[0].State)
	})
	w.check(t, "stay")
	if after := qemuPIDs(t, "stay"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("QEMU of stay: %v before, %v after", before, after)
	}
}

// VM monitoring resets a guest whose agent hangs, and keeps what its
// console showed before.
func TestVMMonitoringResetsAHungGuest(t *testing.T) {
	cl := newQEMUCluster(t)
	cl.vdc("cluster", "update", "cluster1", "--ha", "on", "--ha-vm-monitoring", "on", "--ha-vm-failure-interval", "10s", "--ha-vm-min-uptime", "45s")
	// A minimum uptime longer than a boot under TCG on a loaded machine:
	// the guest booting again after the reset, its agent still silent, is
	// not reset a second time.
	cl.vdc("vm", "create", "hang", "--memory", "256MiB", "--image", "test", "--start")
	cl.waitGuest("hang")
	up := guestUptime(cl, "hang")
	// Freeze the guest agent (it stops answering, the guest runs on).
	cl.vdc("vm", "exec", "hang", "--", "/bin/sh", "-c", "(sleep 1; kill -STOP $(pidof qemu-ga)) >/dev/null 2>&1 &")
	var reset *api.Task
	eventually(t, 2*time.Minute, "a VM monitoring reset of hang", func() bool {
		r := cl.tasks("vm.ha-reset", "hang")
		if len(r) > 0 && api.TaskDone(r[0].State) {
			reset = r[0]
			return true
		}
		return false
	})
	if reset.State != api.TaskSucceeded || reset.Owner != "ha" {
		t.Fatalf("reset task: %s by %s: %v", reset.State, reset.Owner, reset.Error)
	}
	var res api.VMResetResult
	if err := json.Unmarshal(reset.Result, &res); err != nil || !strings.Contains(res.Reason, "silent") || !strings.Contains(res.ConsoleLog, "hang") {
		t.Fatalf("reset result: %v %+v", err, res)
	}
	cl.waitGuest("hang")
	if now := guestUptime(cl, "hang"); now >= up+10 {
		t.Fatalf("guest uptime %.0f s after the reset (%.0f s before): it was not reset", now, up)
	}
	if v := cl.vm("hang"); len(v.Status.HAResets) != 1 {
		t.Fatalf("HA resets on record: %v", v.Status.HAResets)
	}
}
