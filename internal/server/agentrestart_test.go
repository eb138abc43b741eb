package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/server"
)

// A power operation issued while a host's agent restarts (on a new port,
// as under vdc up) waits for it: the task says what it waits for, and
// succeeds once the host's next heartbeat gives the new address.
func TestPowerOpRidesOutAgentRestart(t *testing.T) {
	d := newDC(t, 1, func(c *server.Config) { c.HostTimeout = 30 * time.Second })
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true}))
	before := host(t, d, "host-1").Status.Address
	d.stopAgent("host-1")
	task, err := d.c.Power(ctx, "v1", api.PowerRequest{Action: api.ActionStop, Force: true})
	if err != nil {
		t.Fatalf("power off while the agent restarts: %v", err)
	}
	var tk *api.Task
	eventually(t, 20*time.Second, "the task to say it waits for host-1", func() bool {
		tk, err = d.c.GetTask(ctx, task.Metadata.ID)
		return err == nil && (api.TaskDone(tk.State) || strings.Contains(tk.Message, "waiting up to"))
	})
	if api.TaskDone(tk.State) {
		t.Fatalf("the power task ended while the agent was away: %s %v", tk.State, tk.Error)
	}
	if !strings.Contains(tk.Message, "host-1") {
		t.Errorf("the task's message does not name the host: %q", tk.Message)
	}
	d.startAgent("host-1")
	if _, err := d.c.Wait(ctx, task); err != nil {
		t.Fatalf("power off across the agent's restart: %v", err)
	}
	after := host(t, d, "host-1").Status.Address
	t.Logf("host-1 moved from %s to %s", before, after)
	if got := d.vm("v1").Status.PowerState; got != api.PowerOff {
		t.Fatalf("v1 is %s after the power off", got)
	}
}

// A host whose agent does not come back fails the call once the host
// timeout has passed, saying so.
func TestPowerOpFailsWhenTheAgentDoesNotComeBack(t *testing.T) {
	d := newDC(t, 1, func(c *server.Config) { c.HostTimeout = 5 * time.Second })
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB"), Host: "host-1", PowerOn: true}))
	d.stopAgent("host-1")
	task, err := d.c.Power(ctx, "v1", api.PowerRequest{Action: api.ActionStop, Force: true})
	if err != nil {
		t.Fatalf("power off right after the agent stopped: %v", err)
	}
	_, err = d.c.Wait(ctx, task)
	t.Logf("error: %v", err)
	if err == nil || !strings.Contains(err.Error(), "host host-1 did not come back") {
		t.Fatalf("want an error saying host-1 did not come back, got %v", err)
	}
}
