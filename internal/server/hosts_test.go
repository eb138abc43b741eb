package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func host(t *testing.T, d *dc, name string) *api.Host {
	h, err := client.Get[*api.Host](context.Background(), d.c, api.KindHost, name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestStoppedAgentShowsDisconnectedAndVMsUnknown(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true}))
	if got := d.vm("v1").Status.PowerState; got != api.PowerOn {
		t.Fatalf("power %s", got)
	}
	stopped := time.Now()
	d.stopAgent("host-1")
	eventually(t, 10*time.Second, "host-1 disconnected", func() bool {
		return host(t, d, "host-1").Status.Connection == api.HostDisconnected
	})
	t.Logf("host shown disconnected %s after its agent stopped", time.Since(stopped).Round(100*time.Millisecond))
	eventually(t, 5*time.Second, "v1 unknown", func() bool { return d.vm("v1").Status.PowerState == api.PowerUnknown })
	vm := d.vm("v1")
	if vm.Status.LastKnownPowerState != api.PowerOn || vm.Status.Message == "" {
		t.Fatalf("unknown VM should keep its last known state and say why: %+v", vm.Status)
	}
	if _, err := d.c.Power(ctx, "v1", api.PowerRequest{Action: api.ActionStop}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("power op on a disconnected host: want 409, got %v", err)
	}
	// New VMs go elsewhere.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v2", CPUs: 1, Memory: api.MustSize("64MiB")}))
	if h := d.vm("v2").Spec.Host.Name; h != "host-2" {
		t.Fatalf("placed on %s while host-1 is down", h)
	}
	// The agent comes back: same power state as before.
	d.startAgent("host-1")
	eventually(t, 10*time.Second, "v1 on again", func() bool { return d.vm("v1").Status.PowerState == api.PowerOn })
	if h := host(t, d, "host-1"); h.Status.Connection != api.HostConnected {
		t.Fatalf("host-1 %s", h.Status.Connection)
	}
}

func TestPlacementSpreadsAndExplainsNoRoom(t *testing.T) {
	d := newDC(t, 3)
	ctx := context.Background()
	for i := 0; i < 6; i++ {
		d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: fmt.Sprintf("s%d", i), CPUs: 1, Memory: api.MustSize("1GiB")}))
	}
	per := map[string]int{}
	for i := 0; i < 6; i++ {
		per[d.vm(fmt.Sprintf("s%d", i)).Spec.Host.Name]++
	}
	if per["host-1"] != 2 || per["host-2"] != 2 || per["host-3"] != 2 {
		t.Fatalf("6 VMs on 3 equal hosts: %v", per)
	}
	// Each host has 16 GiB; two 12 GiB VMs cannot run on one host.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "big1", CPUs: 1, Memory: api.MustSize("12GiB"), Host: "host-1", PowerOn: true}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "big2", CPUs: 1, Memory: api.MustSize("12GiB"), Host: "host-1"}))
	_, err := d.c.Power(ctx, "big2", api.PowerRequest{Action: api.ActionStart})
	if !errors.Is(err, api.ErrUnprocessable) {
		t.Fatalf("power-on past memory: want 422, got %v", err)
	}
	_, err = d.c.CreateVM(ctx, api.VMCreateRequest{Name: "huge", CPUs: 1, Memory: api.MustSize("17GiB")})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 422 {
		t.Fatalf("VM larger than any host: want 422, got %v", err)
	}
	t.Log(ae.Message)
}

func TestGracefulStopTimesOutThenPowersOff(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "stubborn", CPUs: 1, Memory: api.MustSize("64MiB"), PowerOn: true,
		Labels: map[string]string{"sim.vdc.io/ignore-acpi": "true"}}))
	start := time.Now()
	task, err := d.c.Power(ctx, "stubborn", api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: 3})
	if err != nil {
		t.Fatal(err)
	}
	// What a user waiting on the task sees: what it waits for and how
	// long is left, counting down, then that it powers off.
	var msgs []string
	var pcts []int
	if _, err := d.c.WaitTask(ctx, task.Metadata.ID, func(tk *api.Task) {
		if tk.Message != "" && (len(msgs) == 0 || msgs[len(msgs)-1] != tk.Message) {
			msgs, pcts = append(msgs, tk.Message), append(pcts, tk.Progress)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < 3*time.Second {
		t.Fatalf("a guest that ignores shutdown was off before the timeout")
	}
	if got := d.vm("stubborn").Status.PowerState; got != api.PowerOff {
		t.Fatalf("power %s after stop timeout", got)
	}
	var waiting []int
	for _, m := range msgs {
		var left int
		if _, err := fmt.Sscanf(m, "waiting for the guest to shut down (ACPI), %ds left", &left); err == nil {
			waiting = append(waiting, left)
		}
	}
	if len(waiting) == 0 || waiting[0] > 3 || !strings.Contains(msgs[len(msgs)-1], "powering off") {
		t.Fatalf("stop progress messages: %q", msgs)
	}
	for i := 1; i < len(waiting); i++ {
		if waiting[i] >= waiting[i-1] {
			t.Errorf("the time left does not count down: %q", msgs)
		}
	}
	for i := 1; i < len(pcts); i++ {
		if pcts[i] < pcts[i-1] {
			t.Errorf("progress went back: %v (%q)", pcts, msgs)
		}
	}
}

// A client that starts following a task late sees it as it is at once,
// not only from its next change: a long stop says what it waits for.
func TestWaitTaskShowsTheTaskAsItIsFirst(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "stubborn", CPUs: 1, Memory: api.MustSize("64MiB"), PowerOn: true,
		Labels: map[string]string{"sim.vdc.io/ignore-acpi": "true"}}))
	// An hour's timeout: the message changes every 36 s.
	task, err := d.c.Power(ctx, "stubborn", api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: 3600})
	if err != nil {
		t.Fatal(err)
	}
	var now *api.Task
	eventually(t, 10*time.Second, "the stop saying what it waits for", func() bool {
		now, err = d.c.GetTask(ctx, task.Metadata.ID)
		return err == nil && strings.HasPrefix(now.Message, "waiting for the guest")
	})
	// The server holds a wait up to 30 s when nothing changes.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var first *api.Task
	_, _ = d.c.WaitTask(wctx, task.Metadata.ID, func(tk *api.Task) {
		if first == nil {
			first = tk
			cancel()
		}
	})
	if first == nil || first.Message != now.Message {
		t.Fatalf("following the task, first saw %+v; it was at %q", first, now.Message)
	}
}

// Hosts write their status every heartbeat; a user's change to a host must
// not fail for that, with or without If-Match.
func TestHostChangesDoNotRaceHeartbeats(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	h := host(t, d, "host-1")
	gen := h.Metadata.Generation
	d.heartbeats(2, "host-1") // a couple of heartbeats change the host's status
	if now := host(t, d, "host-1"); now.Metadata.Revision == h.Metadata.Revision || now.Metadata.Generation != gen {
		t.Fatalf("heartbeats should change the revision (%d→%d) but not the generation (%d→%d)",
			h.Metadata.Revision, now.Metadata.Revision, gen, now.Metadata.Generation)
	}
	if _, err := d.c.Update(ctx, api.KindHost, "host-1", api.HostUpdateRequest{Labels: map[string]string{"rack": "a"}}, gen); err != nil {
		t.Fatalf("update with the generation read before some heartbeats: %v", err)
	}
	for i := 0; i < 20; i++ {
		d.run(d.c.Action(ctx, api.KindHost, "host-1", "maintenance", api.MaintenanceRequest{Action: "enter"}))
		d.run(d.c.Action(ctx, api.KindHost, "host-1", "maintenance", api.MaintenanceRequest{Action: "exit"}))
	}
	if _, err := d.c.Update(ctx, api.KindHost, "host-1", api.HostUpdateRequest{Labels: map[string]string{"rack": "b"}}, gen); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("update with a generation others changed since: want 409, got %v", err)
	}
}
