package e2e

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

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
