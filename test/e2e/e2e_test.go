package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func TestServerAndTwoAgentsThroughTheCLI(t *testing.T) {
	cl := newCluster(t)
	cl.inventory()
	cl.vdc("vm", "create", "web1", "--cpus", "2", "--memory", "1GiB", "--disk", "10GiB")
	cl.vdc("vm", "start", "web1")
	vm := cl.vm("web1")
	if vm.Status.PowerState != api.PowerOn || vm.Spec.CPUs != 2 || vm.Spec.MemoryBytes != api.MustSize("1GiB") {
		t.Fatalf("web1: %+v %+v", vm.Spec, vm.Status)
	}
	if vm.Spec.Disks[0].SizeBytes != api.MustSize("10GiB") || vm.Spec.Disks[0].Datastore.Name != "datastore1" {
		t.Fatalf("web1 disk: %+v", vm.Spec.Disks)
	}
	ls := cl.vdc("vm", "ls")
	if !strings.Contains(ls, "web1") || !strings.Contains(ls, "on") {
		t.Fatalf("vm ls:\n%s", ls)
	}
	hl := cl.vdc("host", "ls")
	for _, want := range []string{"host-1", "host-2", "connected", "sim"} {
		if !strings.Contains(hl, want) {
			t.Fatalf("host ls lacks %q:\n%s", want, hl)
		}
	}
	var tasks []*api.Task
	cl.json(&tasks, "task", "ls")
	ops := map[string]bool{}
	for _, tk := range tasks {
		ops[tk.Op] = true
		if tk.State != api.TaskSucceeded {
			t.Errorf("task %s %s: %s", tk.Op, tk.Target.Name, tk.State)
		}
	}
	for _, op := range []string{"vm.create", "vm.power.start", "datacenter.create", "host.join"} {
		if !ops[op] {
			t.Errorf("task ls lacks a %s task: %v", op, ops)
		}
	}
	// Bad input through the CLI: an error and nothing created.
	for _, args := range [][]string{
		{"vm", "create", "bad1", "--cpus", "0", "--memory", "1GiB"},
		{"vm", "create", "bad2", "--cpus", "1", "--memory", "-1"},
		{"vm", "create", "bad3", "--cpus", "1", "--memory", "1GiB", "--disk", "1EiB"},
		{"vm", "create", "web1", "--cpus", "1", "--memory", "1GiB"},
		{"vm", "create", "bad4", "--cpus", "1", "--memory", "1GiB", "--host", "nohost"},
		{"vm", "create", "bad5", "--cpus", "1", "--memory", "1GiB", "--nic", "nopg"},
		{"vm", "start", "web1"},
	} {
		out, err := cl.try(args...)
		if err == nil {
			t.Errorf("vdc %s succeeded:\n%s", strings.Join(args, " "), out)
		} else if !strings.Contains(out, "vdc: ") {
			t.Errorf("vdc %s: no clear error:\n%s", strings.Join(args, " "), out)
		}
	}
	var vms []*api.VM
	cl.json(&vms, "vm", "ls")
	if len(vms) != 1 {
		t.Fatalf("bad input created VMs: %d", len(vms))
	}
	cl.vdc("vm", "stop", "web1", "--force")
	cl.vdc("vm", "delete", "web1")
}

func TestServerKill9KeepsInventoryAndFinishesTasks(t *testing.T) {
	cl := newCluster(t)
	cl.inventory()
	cl.vdc("vm", "create", "a1", "--cpus", "1", "--memory", "128MiB", "--start")
	cl.vdc("vm", "create", "stubborn", "--cpus", "1", "--memory", "128MiB", "--start", "--label", "sim.vdc.io/ignore-acpi=true")
	// A graceful stop of a guest that ignores it runs until its timeout:
	// kill the server while it runs.
	id := strings.TrimSpace(cl.vdc("vm", "stop", "stubborn", "--timeout", "8s", "--async"))
	eventually(t, 10*time.Second, "stop task running", func() bool {
		tk, err := cl.c.GetTask(context.Background(), id)
		return err == nil && tk.State == api.TaskRunning
	})
	var before []*api.Task
	cl.json(&before, "task", "ls", "--all")
	cl.server.kill9()
	cl.startServer()
	// Inventory and finished tasks are all there.
	if vm := cl.vm("a1"); vm.Status.PowerState != api.PowerOn {
		t.Fatalf("a1 after server crash: %+v", vm.Status)
	}
	var after []*api.Task
	cl.json(&after, "task", "ls", "--all")
	got := map[string]string{}
	for _, tk := range after {
		got[tk.Metadata.ID] = tk.State
	}
	for _, tk := range before {
		if api.TaskDone(tk.State) && got[tk.Metadata.ID] != tk.State {
			t.Errorf("finished task %s %s lost or changed after the crash: %q", tk.Op, tk.Target.Name, got[tk.Metadata.ID])
		}
	}
	// The interrupted task does not stay running forever.
	tk, err := cl.c.WaitTask(context.Background(), id, nil)
	if tk == nil || !api.TaskDone(tk.State) {
		t.Fatalf("interrupted task not finished: %v %v", tk, err)
	}
	if tk.State == api.TaskSucceeded {
		eventually(t, 10*time.Second, "stubborn off", func() bool { return cl.vm("stubborn").Status.PowerState == api.PowerOff })
	} else if tk.Error == nil || tk.Error.Message == "" {
		t.Fatalf("interrupted task failed without a reason: %+v", tk)
	}
	t.Logf("interrupted task ended %s", tk.State)
	cl.vdc("vm", "create", "a2", "--cpus", "1", "--memory", "128MiB")
}

func TestAgentKill9KeepsVMs(t *testing.T) {
	cl := newCluster(t)
	cl.inventory()
	cl.vdc("vm", "create", "on1", "--cpus", "1", "--memory", "128MiB", "--host", "host-1", "--start")
	cl.vdc("vm", "create", "off1", "--cpus", "1", "--memory", "128MiB", "--host", "host-1")
	cl.vdc("vm", "create", "sus1", "--cpus", "1", "--memory", "128MiB", "--host", "host-1", "--start")
	cl.vdc("vm", "suspend", "sus1")
	killed := time.Now()
	cl.agents["host-1"].kill9()
	eventually(t, 10*time.Second, "host-1 disconnected", func() bool {
		return cl.hosts()["host-1"].Status.Connection == api.HostDisconnected
	})
	t.Logf("host-1 shown disconnected %s after kill -9 of its agent", time.Since(killed).Round(100*time.Millisecond))
	eventually(t, 5*time.Second, "VMs of host-1 unknown", func() bool {
		return cl.vm("on1").Status.PowerState == api.PowerUnknown && cl.vm("off1").Status.PowerState == api.PowerUnknown
	})
	cl.startAgent("host-1")
	cl.waitConnected("host-1")
	for name, want := range map[string]string{"on1": api.PowerOn, "off1": api.PowerOff, "sus1": api.PowerSuspended} {
		eventually(t, 10*time.Second, name+" "+want, func() bool { return cl.vm(name).Status.PowerState == want })
	}
}

func TestUpAndAgainOnTheSameData(t *testing.T) {
	dir := t.TempDir()
	listen := freePort(t)
	env := []string{"VDC_CONFIG=" + dir + "/client.json"}
	cl := &cluster{t: t, dir: dir, env: env}
	up := start(t, "vdc up", env, "up", "--data", dir+"/data", "--listen", listen, "--hosts", "2", "--driver", "sim")
	eventually(t, 60*time.Second, "vdc up ready", func() bool { return strings.Contains(up.out.String(), "vdc is up") })
	if !strings.Contains(up.out.String(), "2 of 2 ready") {
		t.Fatalf("vdc up output:\n%s", up.out.String())
	}
	cl.vdc("vm", "create", "web1", "--cpus", "2", "--memory", "1GiB", "--disk", "10GiB")
	cl.vdc("vm", "start", "web1")
	cl.vdc("vm", "create", "db1", "--cpus", "1", "--memory", "512MiB")
	hosts := cl.hosts()
	if len(hosts) != 2 {
		t.Fatalf("hosts: %v", hosts)
	}
	// vdc up starts again an agent that dies.
	agents := childPIDs(t, up.cmd.Process.Pid)
	if len(agents) != 2 {
		t.Fatalf("vdc up should run 2 agent processes, found %v", agents)
	}
	// They joined with a token that no other user of the machine could see
	// (ps shows the command line), and the token's file is gone.
	for _, pid := range agents {
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil {
			t.Fatal(err)
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.Contains(string(cmdline), "vdc1.") || slices.Contains(args, "--join-token") || !slices.Contains(args, "--join-token-file") {
			t.Fatalf("agent %d's command line: %q", pid, args)
		}
		if environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); err != nil || strings.Contains(string(environ), "vdc1.") {
			t.Fatalf("agent %d's environment carries the token (%v)", pid, err)
		}
	}
	if _, err := os.Stat(dir + "/data/join-token"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the join token file outlived the joins: %v", err)
	}
	if err := syscall.Kill(agents[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a new agent process", func() bool {
		now := childPIDs(t, up.cmd.Process.Pid)
		return len(now) == 2 && now[0] != agents[0] && now[1] != agents[0]
	})
	cl.waitConnected("host-1", "host-2")
	if err := up.stop(syscall.SIGINT); err != nil {
		t.Fatalf("vdc up did not exit cleanly on Ctrl-C: %v\n%s", err, up.out.String())
	}
	up2 := start(t, "vdc up again", env, "up", "--data", dir+"/data", "--listen", listen, "--hosts", "2", "--driver", "sim")
	eventually(t, 60*time.Second, "vdc up ready again", func() bool { return strings.Contains(up2.out.String(), "vdc is up") })
	c, err := client.FromFile(dir + "/client.json")
	if err != nil {
		t.Fatal(err)
	}
	cl.c = c
	eventually(t, 15*time.Second, "power states back", func() bool {
		return cl.vm("web1").Status.PowerState == api.PowerOn && cl.vm("db1").Status.PowerState == api.PowerOff
	})
	if hs := cl.hosts(); len(hs) != 2 || hs["host-1"].Status.Connection != api.HostConnected {
		t.Fatalf("hosts after restart: %+v", hs)
	}
	if err := up2.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("vdc up did not exit cleanly on SIGTERM: %v", err)
	}
}

// A machine joins again as an existing host only through host replace:
// the old certificate is refused at once, the new agent keeps the host's
// ID and VMs.
func TestHostReplaceThroughTheCLI(t *testing.T) {
	cl := newCluster(t)
	cl.inventory()
	cl.vdc("vm", "create", "r1", "--cpus", "1", "--memory", "128MiB", "--host", "host-1", "--start")
	before := cl.hosts()["host-1"]
	// A fresh token does not take an existing host's name.
	tok := strings.TrimSpace(cl.vdc("host", "token", "create"))
	cl.agents["host-1"].kill9()
	if out, err := cl.try("host", "info", "host-1"); err != nil || !strings.Contains(out, "serial "+before.Status.Certificate.Serial) {
		t.Fatalf("host info shows no certificate: %v\n%s", err, out)
	}
	saved := filepath.Join(cl.dir, "hosts", "host-1")
	if err := os.Rename(saved, saved+".old"); err != nil { // the machine is reinstalled
		t.Fatal(err)
	}
	cl.startAgentToken("host-1", tok)
	select {
	case <-cl.agents["host-1"].done:
	case <-time.After(30 * time.Second):
		t.Fatal("an agent joining as an existing host with a plain token did not give up")
	}
	if out := cl.agents["host-1"].out.String(); !strings.Contains(out, "vdc host replace host-1") {
		t.Fatalf("the refused agent does not say what to do:\n%s", out)
	}
	token := strings.TrimSpace(cl.vdc("host", "replace", "host-1", "--ttl", "10m"))
	file := filepath.Join(cl.dir, "replace-token")
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(saved); err != nil {
		t.Fatal(err)
	}
	cl.agentArgs = []string{"--join-token-file", file}
	cl.startAgentToken("host-1", "")
	cl.waitConnected("host-1")
	after := cl.hosts()["host-1"]
	if after.Metadata.ID != before.Metadata.ID || after.Status.Certificate.Serial == before.Status.Certificate.Serial {
		t.Fatalf("host-1 after replace: %+v, before: %+v", after, before)
	}
	if vm := cl.vm("r1"); vm.Spec.Host.ID != before.Metadata.ID {
		t.Fatalf("r1 left host-1: %+v", vm.Spec.Host)
	}
	var tasks []*api.Task
	cl.json(&tasks, "task", "ls", "--all")
	ops := map[string]bool{}
	for _, tk := range tasks {
		ops[tk.Op] = ops[tk.Op] || tk.Target.Name == "host-1"
	}
	if !ops["host.replace"] || !ops["host.join"] {
		t.Fatalf("task ls lacks host.replace or host.join of host-1: %v", ops)
	}
}
