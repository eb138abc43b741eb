package server_test

import (
	"context"
	"errors"
	"fmt"
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
	d.run(d.c.Power(ctx, "stubborn", api.PowerRequest{Action: api.ActionStop, TimeoutSeconds: 1}))
	if time.Since(start) < time.Second {
		t.Fatalf("a guest that ignores shutdown was off before the timeout")
	}
	if got := d.vm("stubborn").Status.PowerState; got != api.PowerOff {
		t.Fatalf("power %s after stop timeout", got)
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
