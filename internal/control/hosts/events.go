package hosts

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
)

// Event is something the hosts' heartbeats, or their silence, tell the
// control plane. The liveness service (hosts/liveness) publishes them on a
// Bus; the domains that act on them (ha, migration) subscribe, so that
// heartbeat ingest calls none of them.
type Event interface{ hostEvent() }

// HostFailed: a host of an HA cluster has been silent for longer than the
// cluster's failure detection time. It is published on every judgement
// (about twice a second) until a subscriber takes it, that is returns nil:
// HA declares the host failed, and the host is not published again until
// its state changes.
type HostFailed struct {
	Host   *api.Host
	Silent time.Duration
}

// HostRecovered: a host HA had declared failed heartbeats again (its
// failure is already cleared when this is published).
type HostRecovered struct {
	Host     *api.Host
	FailedAt time.Time
}

// VMsReported: a heartbeat listed the VMs a host runs (all of them, or
// those that changed) and the incoming migration copies it holds.
// Subscribers add to Reply what the host must drop.
type VMsReported struct {
	Host     *api.Host
	VMs      []api.AgentVMState
	Incoming []string
	Reply    *Reply
}

// Fenced: an isolated host reports what it did to its VMs on its own.
type Fenced struct {
	Host    *api.Host
	Records []api.FenceRecord
}

// HASettings: a heartbeat says which generation of HA settings the host
// runs (Gen); a subscriber that has other settings for it sets Reply.HA.
type HASettings struct {
	Host  *api.Host
	Gen   string
	Reply *Reply
}

// NetworkSettings: a heartbeat says which version of the desired network
// the host realized (Gen); a subscriber with another for it sets
// Reply.Network.
type NetworkSettings struct {
	Host  *api.Host
	Gen   string
	Reply *Reply
}

func (NetworkSettings) hostEvent() {}
func (HostFailed) hostEvent()      {}
func (HostRecovered) hostEvent()   {}
func (VMsReported) hostEvent()     {}
func (Fenced) hostEvent()          {}
func (HASettings) hostEvent()      {}

// Reply is what subscribers add to a heartbeat's answer.
type Reply struct {
	// Drop are VMs the host must stop and forget (they run elsewhere now).
	Drop []string
	// DropIncoming are incoming migration copies no migration waits for.
	DropIncoming []string
	// HA are new HA settings for the host; nil when unchanged.
	HA *api.HostHA
	// Network is the host's desired network; nil when unchanged.
	Network *api.HostNetwork
}

// Bus delivers events to subscribers, synchronously and in the order they
// subscribed: a heartbeat's answer is complete once Publish returns.
type Bus struct {
	mu   sync.RWMutex
	next int
	subs map[int]func(context.Context, Event) error
	ids  []int
}

// NewBus returns a bus with no subscriber.
func NewBus() *Bus { return &Bus{subs: map[int]func(context.Context, Event) error{}} }

// Subscribe calls fn for every event published after it; the returned
// func unsubscribes. fn must not publish.
func (b *Bus) Subscribe(fn func(context.Context, Event) error) (cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := b.next
	b.next++
	b.subs[id] = fn
	b.ids = append(b.ids, id)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
		b.ids = slices.DeleteFunc(b.ids, func(i int) bool { return i == id })
	}
}

// On subscribes fn to the events of type E only.
func On[E Event](b *Bus, fn func(context.Context, E) error) (cancel func()) {
	return b.Subscribe(func(ctx context.Context, e Event) error {
		if ev, ok := e.(E); ok {
			return fn(ctx, ev)
		}
		return nil
	})
}

// Publish hands e to every subscriber in turn and returns their errors,
// joined (nil when every one took it).
func (b *Bus) Publish(ctx context.Context, e Event) error {
	b.mu.RLock()
	fns := make([]func(context.Context, Event) error, 0, len(b.ids))
	for _, id := range b.ids {
		fns = append(fns, b.subs[id])
	}
	b.mu.RUnlock()
	var errs []error
	for _, fn := range fns {
		if err := fn(ctx, e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
