package events

import (
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/store"
)

// Of says what a change means to a user: none, one or a few events, with
// no Seq yet (the Log numbers them).
func Of(ch store.Change) []api.Event {
	base := api.Event{Time: ch.Time.UTC(), Kind: ch.Kind, ID: ch.ID}
	if ch.Obj != nil {
		base.Name = ch.Obj.GetMeta().Name
	} else if ch.Prev != nil {
		base.Name = ch.Prev.GetMeta().Name
	}
	if t, ok := ch.Obj.(*api.Task); ok {
		return []api.Event{taskEvent(base, t)}
	}
	if ch.Kind == api.KindTask {
		return nil
	}
	switch {
	case ch.Prev == nil:
		e := base
		e.Type = api.EventCreated
		e.Message = fmt.Sprintf("%s %s created", api.Singular(ch.Kind), base.Name)
		return []api.Event{e}
	case ch.Obj == nil:
		e := base
		e.Type = api.EventDeleted
		e.Message = fmt.Sprintf("%s %s deleted", api.Singular(ch.Kind), base.Name)
		return []api.Event{e}
	}
	switch o := ch.Obj.(type) {
	case *api.VM:
		return vmEvents(base, ch.Prev.(*api.VM), o)
	case *api.Datastore:
		return storage.DatastoreEvents(base, ch.Prev.(*api.Datastore), o)
	case *api.Host:
		return hostEvents(base, ch.Prev.(*api.Host), o)
	}
	return nil
}

// taskEvent reports a task's state: "vm.power-on vm1: running".
func taskEvent(base api.Event, t *api.Task) api.Event {
	e := base
	e.Type, e.Task, e.Name = api.EventTask, t, t.Target.Name
	e.Message = fmt.Sprintf("%s %s: %s", t.Op, t.Target.Name, t.State)
	if t.Error != nil {
		e.Message += ": " + t.Error.Message
	}
	return e
}

// vmEvents reports a change of a VM's power state (not its first one).
func vmEvents(base api.Event, p, o *api.VM) []api.Event {
	if p.Status.PowerState == o.Status.PowerState || p.Status.PowerState == "" {
		return nil
	}
	e := base
	e.Type, e.From, e.To = api.EventVMPower, p.Status.PowerState, o.Status.PowerState
	e.Message = fmt.Sprintf("vm %s: %s → %s", o.Metadata.Name, e.From, e.To)
	if o.Status.Message != "" {
		e.Message += " (" + o.Status.Message + ")"
	}
	return []api.Event{e}
}

// hostEvents reports a host's connection changing and HA declaring it
// failed or seeing it back.
func hostEvents(base api.Event, p, o *api.Host) []api.Event {
	var out []api.Event
	if p.Status.Connection != o.Status.Connection {
		e := base
		e.Type, e.From, e.To = api.EventHostConnection, p.Status.Connection, o.Status.Connection
		e.Message = fmt.Sprintf("host %s %s", o.Metadata.Name, o.Status.Connection)
		out = append(out, e)
	}
	if p.Status.FailedAt.IsZero() != o.Status.FailedAt.IsZero() {
		e := base
		e.Type, e.From, e.To = api.EventHostHA, "ok", "failed"
		e.Message = fmt.Sprintf("host %s failed: HA restarts its protected VMs on the other hosts", o.Metadata.Name)
		if o.Status.FailedAt.IsZero() {
			e.From, e.To = "failed", "ok"
			e.Message = fmt.Sprintf("host %s, declared failed at %s, is back", o.Metadata.Name, p.Status.FailedAt.Format(time.RFC3339))
		}
		out = append(out, e)
	}
	return out
}
