package liveness

import (
	"context"
	"fmt"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
)

// Heartbeat records a heartbeat of host h (as it was when the request was
// authenticated) and answers it. admit, given the host as stored, refuses
// the beat with an error (its certificate was revoked meanwhile). The
// answer leaves RenewCertificate to the caller, which holds the
// certificate.
func (s *Service) Heartbeat(ctx context.Context, h *api.Host, hb *api.Heartbeat, admit func(*api.Host) error) (api.HeartbeatResponse, error) {
	now := time.Now().UTC()
	reconnected := false
	var failedAt time.Time
	err := state.UpdateKind(ctx, s.d.State, nil, api.KindHost, h.Metadata.ID, func(o api.Object) error {
		h := o.(*api.Host)
		if err := admit(h); err != nil {
			return err
		}
		reconnected, failedAt = record(h, hb, now)
		return nil
	})
	if err != nil {
		return api.HeartbeatResponse{}, fmt.Errorf("record heartbeat of host %s: %w", h.Metadata.Name, err)
	}
	if reconnected {
		s.d.Log.Info("host connected", "host", h.Metadata.Name, "address", hb.Address)
	}
	if !failedAt.IsZero() {
		s.publish(ctx, hosts.HostRecovered{Host: h, FailedAt: failedAt})
	}
	s.reconcileVMs(ctx, h, hb.VMs, hb.Full, hb.VMsSeq)
	s.recordDatastoreSpace(ctx, hb.Datastores)
	if len(hb.Fenced) > 0 {
		s.publish(ctx, hosts.Fenced{Host: h, Records: hb.Fenced})
	}
	reply := &hosts.Reply{}
	s.publish(ctx, hosts.VMsReported{Host: h, VMs: hb.VMs, Incoming: hb.Incoming, Reply: reply})
	s.publish(ctx, hosts.HASettings{Host: h, Gen: hb.HAGen, Reply: reply})
	s.publish(ctx, hosts.NetworkSettings{Host: h, Gen: hb.NetworkGen, Reply: reply})
	return api.HeartbeatResponse{
		IntervalSeconds: int(s.d.HeartbeatInterval / time.Second),
		Datastores:      s.datastoresFor(h),
		DropIncoming:    reply.DropIncoming,
		Drop:            reply.Drop,
		HA:              reply.HA,
		Network:         reply.Network,
		// Its VMs are shown unknown until a full list says otherwise; a
		// list of changes says nothing of the VMs that did not change.
		SendFull: reconnected && !hb.Full,
	}, nil
}

// record writes what a heartbeat says into the host's status; it tells
// whether the host was not connected, and when HA had declared it failed
// (zero if not).
func record(h *api.Host, hb *api.Heartbeat, now time.Time) (reconnected bool, failedAt time.Time) {
	st := &h.Status
	reconnected = st.Connection != api.HostConnected
	if reconnected {
		st.Connection = api.HostConnected
		st.ConnectedSince = now
	}
	failedAt, st.FailedAt = st.FailedAt, time.Time{}
	st.LastHeartbeat = now
	st.Address, st.Hostname, st.Driver, st.Accel, st.Version = hb.Address, hb.Hostname, hb.Driver, hb.Accel, hb.Version
	st.Hypervisor, st.AccelReason = hb.Hypervisor, hb.AccelReason
	st.CPUs, st.MemoryBytes = hb.CPUs, hb.MemoryBytes
	st.TunnelAddress, st.NetworkGen, st.Networks = hb.TunnelAddress, hb.NetworkGen, hb.Networks
	st.Uplinks, st.LLDP = hb.Uplinks, hb.LLDP
	st.Datastores = st.Datastores[:0]
	for _, d := range hb.Datastores {
		if d.Reachable {
			st.Datastores = append(st.Datastores, api.Ref{ID: d.ID})
		}
	}
	return reconnected, failedAt
}

// publish hands a heartbeat's event to its subscribers; what they could
// not do they say in the log.
func (s *Service) publish(ctx context.Context, e hosts.Event) {
	if err := s.d.Bus.Publish(ctx, e); err != nil {
		s.d.Log.Warn("heartbeat: acting on what a host reported failed", "event", fmt.Sprintf("%T", e), "err", err)
	}
}

// datastoresFor lists the datastores a host should report on: the shared
// ones of its datacenter and its own local ones.
func (s *Service) datastoresFor(h *api.Host) []api.DatastoreToCheck {
	var dc string
	if c, ok := state.Get[*api.Cluster](s.d.State, h.Spec.Cluster.ID); ok {
		dc = c.Spec.Datacenter.ID
	}
	var out []api.DatastoreToCheck
	state.Each(s.d.State, func(ds *api.Datastore) {
		if ds.Spec.Datacenter.ID == dc && (ds.Spec.Shared || ds.Spec.Host.ID == h.Metadata.ID) {
			out = append(out, api.DatastoreToCheck{ID: ds.Metadata.ID, Path: ds.Spec.Path})
		}
	})
	return out
}

// recordDatastoreSpace keeps datastore capacity and free space current,
// writing only when they moved by more than 1 %.
func (s *Service) recordDatastoreSpace(ctx context.Context, seen []api.DatastoreSeen) {
	for _, d := range seen {
		if !d.Reachable {
			continue
		}
		ds, ok := state.Get[*api.Datastore](s.d.State, d.ID)
		if !ok {
			continue
		}
		st := ds.Status
		if st.CapacityBytes == d.CapacityBytes && absDiff(int64(st.FreeBytes), int64(d.FreeBytes)) <= int64(d.CapacityBytes)/100 &&
			st.Alarm == s.d.AlarmLevel(d.CapacityBytes, d.FreeBytes) {
			continue
		}
		_ = state.Update(ctx, s.d.State, nil, d.ID, func(ds *api.Datastore) error {
			ds.Status.CapacityBytes, ds.Status.FreeBytes = d.CapacityBytes, d.FreeBytes
			ds.Status.Alarm = s.d.AlarmLevel(d.CapacityBytes, d.FreeBytes)
			return nil
		})
	}
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// reconcileVMs brings the inventory's power states in line with what the
// host reports. A report only wins over a newer one it does not know of
// when the VM's state was unknown.
// Only a full list can tell that the host lacks a VM.
func (s *Service) reconcileVMs(ctx context.Context, h *api.Host, reported []api.AgentVMState, full bool, listedAt uint64) {
	seen := make(map[string]api.AgentVMState, len(reported))
	for _, st := range reported {
		seen[st.ID] = st
	}
	var stale []api.AgentVMState
	var missing []string
	for _, vm := range s.d.Inv.VMsOn(h.Metadata.ID) {
		if vm.Status.Phase != api.PhaseReady {
			continue
		}
		st, ok := seen[vm.Metadata.ID]
		switch {
		case !ok:
			// Defined after the host made its list: not missing.
			if full && vm.Status.StateSeq <= listedAt && vm.Status.PowerState != api.PowerUnknown {
				missing = append(missing, vm.Metadata.ID)
			}
		case st.Seq > vm.Status.StateSeq, vm.Status.PowerState == api.PowerUnknown,
			len(st.Disks) > 0 && inventory.DisksMoved(vm.Status.Disks, st.Disks):
			stale = append(stale, st)
		}
	}
	for _, st := range stale {
		if err := s.recordVMState(ctx, h.Metadata.ID, st); err != nil {
			s.d.Log.Warn("cannot record VM state", "vm", st.ID, "err", err)
		}
	}
	for _, id := range missing {
		_ = state.Update(ctx, s.d.State, nil, id, func(vm *api.VM) error {
			if vm.Spec.Host.ID != h.Metadata.ID || vm.Status.StateSeq > listedAt {
				return state.ErrUnchanged // moved (a migration) or changed since the cache was read
			}
			inventory.SetPower(vm, api.PowerUnknown, fmt.Sprintf("host %s does not know this VM", h.Metadata.Name))
			return nil
		})
	}
}

// recordVMState stores a state a host reported for a VM, unless a newer
// report is already stored or the VM has moved to another host since.
func (s *Service) recordVMState(ctx context.Context, hostID string, st api.AgentVMState) error {
	change := inventory.VMStateChange(st)
	return state.UpdateKind(ctx, s.d.State, nil, api.KindVM, st.ID, func(o api.Object) error {
		if o.(*api.VM).Spec.Host.ID != hostID {
			return state.ErrUnchanged
		}
		return change(o)
	})
}
