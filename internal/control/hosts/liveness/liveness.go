// Package liveness is the control plane's knowledge of which hosts are
// alive: it records the heartbeats hosts send (their hardware, reachable
// datastores and free space, and the power states of their VMs) and, on
// the leader, watches for hosts that went silent: they are shown
// disconnected and their VMs unknown, and a host of an HA cluster silent
// past its failure detection time is published as hosts.HostFailed.
//
// What a heartbeat tells that other domains act on (VMs that run
// elsewhere now, copies no migration waits for, isolation fences, a failed
// host that is back, HA settings to push) goes out as events on a
// hosts.Bus; liveness calls none of those domains.
//
// liveness depends on hosts (the bus), inventory (VM state rules) and
// state; ha and migration subscribe to its events, never the other way.
package liveness

import (
	"log/slog"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// Deps is what the liveness service works with.
type Deps struct {
	State *state.State
	Inv   *inventory.Inventory
	// Bus carries the events heartbeats and silences give rise to.
	Bus *hosts.Bus
	// Txn starts the leader-fenced transactions of the monitor's writes.
	Txn func() *store.Txn
	// HeartbeatInterval is how often hosts report; HostTimeout how long
	// without a heartbeat before a host is shown disconnected.
	HeartbeatInterval time.Duration
	HostTimeout       time.Duration
	// AlarmLevel says how full a datastore is (the storage rule).
	AlarmLevel func(capacity, free api.Size) string
	Log        *slog.Logger
}

// Service records heartbeats and judges silences.
type Service struct {
	d Deps
	// tick is how often the monitor judges the hosts.
	tick time.Duration
}

// New returns the liveness service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return &Service{d: d, tick: 500 * time.Millisecond}
}
