package liveness

import (
	"context"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// Monitor (leader only) marks hosts whose heartbeats stopped as
// disconnected and their VMs as unknown, and publishes HostFailed for the
// hosts of HA clusters silent past their failure detection time. The clock
// is this server's: a host is judged by when this leader last saw its
// heartbeat land, and every host gets a full window after the leader
// starts. It returns when ctx ends.
func (s *Service) Monitor(ctx context.Context) {
	m := &monitor{s: s, start: time.Now(), lastSeen: map[string]time.Time{}, published: map[string]int64{}}
	beats := make(chan string, 1024)
	_, cancel := s.d.State.Cache.Subscribe(func(ch store.Change) {
		if ch.Kind != api.KindHost || ch.Obj == nil {
			return
		}
		h := ch.Obj.(*api.Host)
		if ch.Prev == nil || !h.Status.LastHeartbeat.Equal(ch.Prev.(*api.Host).Status.LastHeartbeat) {
			select {
			case beats <- h.Metadata.ID:
			default: // the ticker below catches up
			}
		}
	})
	defer cancel()
	tick := time.NewTicker(s.tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-beats:
			m.lastSeen[id] = time.Now()
		case now := <-tick.C:
			for _, h := range state.List[*api.Host](s.d.State, nil) {
				m.judge(ctx, h, now)
			}
		}
	}
}

// monitor is what one leader's Monitor remembers of the hosts.
type monitor struct {
	s        *Service
	start    time.Time
	lastSeen map[string]time.Time // when a heartbeat of the host last landed
	// published holds, by host ID, the revision of the host a subscriber
	// took a HostFailed of: it is not published again until the host
	// changes (the cache may not show the failure yet).
	published map[string]int64
}

// judge looks at one host at time now.
func (m *monitor) judge(ctx context.Context, h *api.Host, now time.Time) {
	seen, ok := m.lastSeen[h.Metadata.ID]
	if !ok {
		seen = m.start
	}
	silent := now.Sub(seen)
	if h.Status.Connection == api.HostConnected && silent > m.s.d.HostTimeout {
		if m.s.markDisconnected(ctx, h, silent) {
			return // judged again next tick, as it is now
		}
	}
	if !h.Status.FailedAt.IsZero() || silent <= detection(m.s.d.State, h) {
		return
	}
	if rev, ok := m.published[h.Metadata.ID]; ok && rev == h.Metadata.Revision {
		return
	}
	if err := m.s.d.Bus.Publish(ctx, hosts.HostFailed{Host: h, Silent: silent}); err != nil {
		m.s.d.Log.Debug("host silent past HA failure detection: not declared failed yet", "host", h.Metadata.Name, "err", err)
		return // it changed (a heartbeat?): judged again next tick
	}
	m.published[h.Metadata.ID] = h.Metadata.Revision
	if h.Status.Connection == api.HostConnected { // failure detection shorter than the host timeout
		go m.s.markVMsUnknown(ctx, h) // not in the way of judging the other hosts
	}
}

// detection is how long a host may be silent before HA declares it
// failed: forever when its cluster has no HA.
func detection(st *state.State, h *api.Host) time.Duration {
	if cl, ok := state.Get[*api.Cluster](st, h.Spec.Cluster.ID); ok && cl.Spec.HA.On() {
		return cl.Spec.HA.FailureDetection()
	}
	return time.Duration(1<<63 - 1)
}

// markDisconnected shows a silent host disconnected; it tells whether it
// did.
func (s *Service) markDisconnected(ctx context.Context, h *api.Host, silent time.Duration) bool {
	upd := store.Clone(h)
	upd.Status.Connection = api.HostDisconnected
	if _, err := s.d.Txn().Update(h, upd).Commit(ctx); err != nil {
		return false // it changed (maybe a heartbeat): judge again next tick
	}
	s.d.Log.Warn("host disconnected: no heartbeat", "host", h.Metadata.Name, "silent", silent.Round(time.Second))
	go s.markVMsUnknown(ctx, h) // not in the way of judging the other hosts
	return true
}

// markVMsUnknown shows the VMs of a host that stopped reporting as
// unknown.
func (s *Service) markVMsUnknown(ctx context.Context, h *api.Host) {
	msg := fmt.Sprintf("host %s is disconnected", h.Metadata.Name)
	for _, vm := range s.d.Inv.VMsOn(h.Metadata.ID) {
		if vm.Status.PowerState == api.PowerUnknown {
			continue
		}
		_ = state.Update(ctx, s.d.State, nil, vm.Metadata.ID, func(v *api.VM) error {
			if v.Spec.Host.ID != h.Metadata.ID || v.Status.PowerState == api.PowerUnknown {
				return state.ErrUnchanged // restarted elsewhere by HA meanwhile
			}
			inventory.SetPower(v, api.PowerUnknown, msg)
			return nil
		})
	}
}
