package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
)

// vdc up says it is up only once its hosts are ready, so that a script's
// next command works; it says how each host runs VMs (TCG and why not
// KVM, here) and what each offers: the hosts share the machine.
func TestUpIsReadyWhenItSaysSo(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	env := []string{"VDC_CONFIG=" + filepath.Join(dir, "client.json")}
	cl := &cluster{t: t, dir: dir, env: env, qemu: true}
	t.Cleanup(func() { cl.killVMProcesses() })
	up := start(t, "vdc up", env, "up", "--data", filepath.Join(dir, "data"), "--listen", freePort(t), "--hosts", "2", "--driver", "qemu")
	eventually(t, 3*time.Minute, "vdc up to say it is up", func() bool {
		select {
		case err := <-up.done:
			t.Fatalf("vdc up exited: %v\n%s", err, up.out.String())
		default:
		}
		return strings.Contains(up.out.String(), "vdc is up")
	})
	c, err := client.FromFile(filepath.Join(dir, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	cl.c = c
	out := up.out.String()
	hosts := cl.hosts()
	_, machine := qemu.MachineCapacity()
	var offered int64
	for _, name := range []string{"host-1", "host-2"} {
		h := hosts[name]
		if h == nil || h.Status.Connection != api.HostConnected || len(h.Status.Datastores) == 0 {
			t.Fatalf("vdc up said it is up with %s not ready: %+v\n%s", name, h, out)
		}
		offered += int64(h.Status.MemoryBytes)
		line := lineWith(out, "    "+name+" ")
		if !strings.Contains(line, "offers VMs "+strconv.Itoa(h.Status.CPUs)+" CPU") || !strings.Contains(line, h.Status.MemoryBytes.String()) {
			t.Errorf("vdc up does not say what %s offers (%d CPUs, %s): %q", name, h.Status.CPUs, h.Status.MemoryBytes, line)
		}
		switch h.Status.Accel {
		case "tcg":
			if h.Status.AccelReason == "" || !strings.Contains(line, "under TCG") || !strings.Contains(line, "KVM not used: "+h.Status.AccelReason) {
				t.Errorf("%s runs under TCG (%q); vdc up says: %q", name, h.Status.AccelReason, line)
			}
			if info := cl.vdc("host", "info", name); !strings.Contains(info, "KVM not used: "+h.Status.AccelReason) {
				t.Errorf("host info does not say why %s does not use KVM:\n%s", name, info)
			}
		case "kvm":
			if !strings.Contains(line, "under KVM") {
				t.Errorf("%s runs under KVM; vdc up says: %q", name, line)
			}
		default:
			t.Errorf("%s: accel %q", name, h.Status.Accel)
		}
	}
	if offered > machine {
		t.Errorf("the hosts offer %s of memory together; the machine has %s", api.Size(offered), api.Size(machine))
	}
	if got := cl.vdc("wait", "ready", "--timeout", "5s"); !strings.Contains(got, "2 of 2 hosts ready") {
		t.Errorf("vdc wait ready after vdc up: %q", got)
	}
	// The script's next command.
	cl.vdc("image", "build-test")
}

// A host that does not join fails vdc up, naming the host and its log
// and quoting why; vdc up does not claim to be up.
func TestUpNamesTheHostThatDidNotJoin(t *testing.T) {
	dir := t.TempDir()
	env := []string{"VDC_CONFIG=" + filepath.Join(dir, "client.json")}
	hostDir := filepath.Join(dir, "data", "hosts", "host-2")
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(hostDir, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	// Another agent holds host-2's data dir: its agent cannot start.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	up := start(t, "vdc up", env, "up", "--data", filepath.Join(dir, "data"), "--listen", freePort(t), "--hosts", "2", "--driver", "sim",
		"--ready-timeout", "10s")
	select {
	case err = <-up.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("vdc up neither failed nor gave up:\n%s", up.out.String())
	}
	out := up.out.String()
	if err == nil || strings.Contains(out, "vdc is up") {
		t.Fatalf("vdc up with a host that cannot join: %v\n%s", err, out)
	}
	for _, want := range []string{"host host-2 has not joined yet", filepath.Join(hostDir, "agent.log"), "in use by another agent", "host-1 ready"} {
		if !strings.Contains(out, want) {
			t.Errorf("vdc up's output lacks %q:\n%s", want, out)
		}
	}
}

// After a restart the store still shows the hosts connected, from before:
// vdc up is ready only once it heard from them again.
func TestUpAgainWaitsToHearFromItsHosts(t *testing.T) {
	dir := t.TempDir()
	env := []string{"VDC_CONFIG=" + filepath.Join(dir, "client.json")}
	args := []string{"up", "--data", filepath.Join(dir, "data"), "--listen", freePort(t), "--hosts", "1", "--driver", "sim", "--ready-timeout", "10s"}
	up := start(t, "vdc up", env, args...)
	eventually(t, 60*time.Second, "vdc up ready", func() bool { return strings.Contains(up.out.String(), "vdc is up") })
	if err := up.stop(syscall.SIGINT); err != nil {
		t.Fatalf("vdc up did not exit cleanly on Ctrl-C: %v\n%s", err, up.out.String())
	}
	// Its agent cannot start this time: another holds its data dir.
	lock, err := os.OpenFile(filepath.Join(dir, "data", "hosts", "host-1", "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	up2 := start(t, "vdc up again", env, args...)
	select {
	case err = <-up2.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("vdc up neither failed nor gave up:\n%s", up2.out.String())
	}
	out := up2.out.String()
	// Shown connected from before, then disconnected once the server's
	// host timeout has passed: either way not ready.
	if err == nil || strings.Contains(out, "vdc is up") || !strings.Contains(out, "did not join within 10s") ||
		!strings.Contains(out, "host host-1 shown connected, waiting for its next heartbeat") && !strings.Contains(out, "host host-1 disconnected") {
		t.Fatalf("vdc up again, its host's agent unable to start: %v\n%s", err, out)
	}
}

// vdc wait ready waits for the client config, the server and its hosts,
// and says what is missing when it gives up.
func TestWaitReady(t *testing.T) {
	dir := t.TempDir()
	if out, err := (&cluster{t: t, env: []string{"VDC_CONFIG=" + filepath.Join(dir, "none.json")}}).try("wait", "ready", "--timeout", "1s"); err == nil ||
		!strings.Contains(out, "not ready after 1s: no client config at "+filepath.Join(dir, "none.json")) {
		t.Fatalf("wait ready with no client config: %v\n%s", err, out)
	}
	cl := newCluster(t)
	ds := filepath.Join(cl.dir, "datastore1")
	if err := os.MkdirAll(ds, 0o755); err != nil {
		t.Fatal(err)
	}
	cl.vdc("datacenter", "create", "dc1")
	cl.vdc("cluster", "create", "cluster1")
	cl.vdc("datastore", "create", "datastore1", "--path", ds)
	cl.token = strings.TrimSpace(cl.vdc("host", "token", "create", "--uses", "1"))
	wait := start(t, "vdc wait ready", cl.env, "wait", "ready", "--timeout", "2m")
	eventually(t, 30*time.Second, "wait ready to say it waits for a host", func() bool {
		return strings.Contains(wait.out.String(), "waiting: no host has joined yet")
	})
	select {
	case err := <-wait.done:
		t.Fatalf("wait ready returned with no host: %v\n%s", err, wait.out.String())
	default:
	}
	cl.startAgent("host-1")
	select {
	case err := <-wait.done:
		if err != nil {
			t.Fatalf("wait ready: %v\n%s", err, wait.out.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("wait ready did not return:\n%s", wait.out.String())
	}
	if !strings.Contains(wait.out.String(), "1 of 1 hosts ready") {
		t.Errorf("wait ready's output:\n%s", wait.out.String())
	}
	if h := cl.hosts()["host-1"]; h.Status.Connection != api.HostConnected || len(h.Status.Datastores) == 0 {
		t.Fatalf("wait ready returned before host-1 was ready: %+v", h.Status)
	}
	out, err := cl.try("wait", "ready", "--hosts", "2", "--timeout", "2s")
	if err == nil || !strings.Contains(out, "not ready after 2s: 1 of 2 hosts ready") {
		t.Fatalf("wait ready for 2 hosts of 1: %v\n%s", err, out)
	}
}

// lineWith is the first line of out that contains s.
func lineWith(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return l
		}
	}
	return ""
}

// A host that hung (its agent stopped, not killed: it does not know it
// missed anything) and comes back shows its VMs' power states again from
// its first heartbeats, not half a minute later.
func TestHungHostComesBackWithItsVMs(t *testing.T) {
	cl := newCluster(t)
	cl.inventoryN(1)
	cl.vdc("vm", "create", "on1", "--cpus", "1", "--memory", "128MiB", "--start")
	cl.vdc("vm", "create", "off1", "--cpus", "1", "--memory", "128MiB")
	pid := cl.agents["host-1"].cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	ctx := context.Background()
	host1 := func() *api.Host {
		h, err := client.Get[*api.Host](ctx, cl.c, api.KindHost, "host-1")
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	power := func(name string) string {
		vm, err := cl.c.GetVM(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return vm.Status.PowerState
	}
	eventually(t, 30*time.Second, "host-1 disconnected and its VMs unknown", func() bool {
		return host1().Status.Connection == api.HostDisconnected && power("on1") == api.PowerUnknown && power("off1") == api.PowerUnknown
	})
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// Count the heartbeats since it connected again: the VMs must be known
	// once the server has answered two (the first asks for every VM's
	// state, the next carries them), that is when it records a third.
	beats := map[time.Time]bool{}
	eventually(t, 30*time.Second, "three heartbeats of host-1 since it came back", func() bool {
		h := host1()
		if h.Status.Connection != api.HostConnected {
			return false
		}
		if !h.Status.LastHeartbeat.Before(h.Status.ConnectedSince) {
			beats[h.Status.LastHeartbeat] = true
		}
		return len(beats) >= 3
	})
	for name, want := range map[string]string{"on1": api.PowerOn, "off1": api.PowerOff} {
		if vm, _ := cl.c.GetVM(ctx, name); vm.Status.PowerState != want {
			t.Errorf("%s is %s (%s) three heartbeats after its host came back, want %s", name, vm.Status.PowerState, vm.Status.Message, want)
		}
	}
}
