package server

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

// GET /api/v1/hosts?cluster=
func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	var clusterID string
	if c := r.URL.Query().Get("cluster"); c != "" {
		o, err := s.inv.Lookup(api.KindCluster, c)
		if err != nil {
			fail(w, err)
			return
		}
		clusterID = o.GetMeta().ID
	}
	v := &viewer{s: s}
	var items []api.Object
	s.cache.Each(api.KindHost, func(o api.Object) {
		if clusterID == "" || o.(*api.Host).Spec.Cluster.ID == clusterID {
			items = append(items, o)
		}
	})
	for i := range items {
		items[i] = v.view(items[i])
	}
	inventory.SortByName(items)
	reply(w, http.StatusOK, api.List[api.Object]{Items: nonNil(items), Revision: s.cache.Rev()})
}

func (s *Server) updateHost(w http.ResponseWriter, r *http.Request) {
	var req api.HostUpdateRequest
	if !decode(w, r, &req) {
		return
	}
	s.update(w, r, api.KindHost, func(o api.Object) error {
		upd := o.(*api.Host)
		if err := inventory.FirstErr(inventory.Rename("host", &upd.Metadata, req.Name), inventory.Relabel(&upd.Metadata, req.Labels)); err != nil || req.Cluster == nil {
			return err
		}
		cl, err := s.inv.Lookup(api.KindCluster, *req.Cluster)
		if err != nil || cl.GetMeta().ID == upd.Spec.Cluster.ID {
			return err
		}
		if n := len(s.tally.VMsOn(upd.Metadata.ID)); n > 0 {
			return api.Errorf(api.ErrConflict, "cannot move host %q to cluster %q: it has %d VMs", upd.Metadata.Name, cl.GetMeta().Name, n)
		}
		upd.Spec.Cluster = api.Ref{ID: cl.GetMeta().ID}
		return nil
	})
}

func (s *Server) runningVMsOn(hostID string) []string {
	var names []string
	for _, vm := range s.inv.VMsOn(hostID) {
		if state.HoldsResources(vm) {
			names = append(names, vm.Metadata.Name)
		}
	}
	sort.Strings(names)
	return names
}

// POST /api/v1/agent/heartbeat
func (s *Server) agentHeartbeat(w http.ResponseWriter, r *http.Request) {
	h, cert, err := s.hostOfRequest(r)
	if err != nil {
		fail(w, err)
		return
	}
	var hb api.Heartbeat
	if !decode(w, r, &hb) {
		return
	}
	ctx := r.Context()
	now := time.Now().UTC()
	serial := pki.Serial(cert)
	reconnected := false
	err = state.UpdateKind(ctx, s.st, nil, api.KindHost, h.Metadata.ID, func(o api.Object) error {
		h := o.(*api.Host)
		// Revoked (a host replace) since the check above: not one more beat.
		if matchCert(h, serial) == certRefused {
			return errCertRefused(h, serial)
		}
		st := &h.Status
		reconnected = st.Connection != api.HostConnected
		if reconnected {
			st.Connection = api.HostConnected
			st.ConnectedSince = now
			s.log.Info("host connected", "host", h.Metadata.Name, "address", hb.Address)
		}
		if !st.FailedAt.IsZero() {
			s.log.Warn("a host HA declared failed is back", "host", h.Metadata.Name, "failedAt", st.FailedAt)
			st.FailedAt = time.Time{}
		}
		st.LastHeartbeat = now
		st.Address, st.Hostname, st.Driver, st.Accel, st.Version = hb.Address, hb.Hostname, hb.Driver, hb.Accel, hb.Version
		st.Hypervisor, st.AccelReason = hb.Hypervisor, hb.AccelReason
		st.CPUs, st.MemoryBytes = hb.CPUs, hb.MemoryBytes
		st.Datastores = st.Datastores[:0]
		for _, d := range hb.Datastores {
			if d.Reachable {
				st.Datastores = append(st.Datastores, api.Ref{ID: d.ID})
			}
		}
		return nil
	})
	if err != nil {
		fail(w, fmt.Errorf("record heartbeat of host %s: %w", h.Metadata.Name, err))
		return
	}
	s.reconcileVMs(ctx, h, hb.VMs, hb.Full, hb.VMsSeq)
	s.recordDatastoreSpace(ctx, hb.Datastores)
	s.recordFences(ctx, h, hb.Fenced)
	resp := api.HeartbeatResponse{
		IntervalSeconds: int(s.cfg.HeartbeatInterval / time.Second),
		Datastores:      s.datastoresFor(h),
		DropIncoming:    s.migration.OrphanCopies(h, hb.Incoming),
		Drop:            s.strays(h, hb.VMs),
		// A certificate that outlives the server's policy (one from before
		// certificates were short-lived) is renewed at once.
		RenewCertificate: cert.NotAfter.After(now.Add(s.cfg.HostCertTTL + time.Minute)),
		// Its VMs are shown unknown until a full list says otherwise; a
		// list of changes says nothing of the VMs that did not change.
		SendFull: reconnected && !hb.Full,
	}
	if ha := s.hostHA(h); ha.Gen != hb.HAGen {
		resp.HA = ha
	}
	reply(w, http.StatusOK, resp)
}

// orphanCopies picks, of the copies a host is receiving, the ones no
// migration task waits for: their task ended while it could not reach the
// host to throw them away.
func (s *Server) orphanCopies(h *api.Host, incoming []string) []string {
	if len(incoming) == 0 {
		return nil
	}
	waited := map[string]bool{}
	s.cache.Each(api.KindTask, func(o api.Object) {
		if t := o.(*api.Task); t.Op == api.OpVMMigrate && !api.TaskDone(t.State) {
			waited[t.Target.ID] = true
		}
	})
	var drop []string
	for _, id := range incoming {
		if !waited[id] {
			s.log.Warn("host keeps the copy of a migration that ended; dropping it", "host", h.Metadata.Name, "vm", id)
			drop = append(drop, id)
		}
	}
	return drop
}

// datastoresFor lists the datastores a host should report on: the shared
// ones of its datacenter and its own local ones.
func (s *Server) datastoresFor(h *api.Host) []api.DatastoreToCheck {
	var dc string
	if c, ok := s.cache.Get(api.KindCluster, h.Spec.Cluster.ID); ok {
		dc = c.(*api.Cluster).Spec.Datacenter.ID
	}
	var out []api.DatastoreToCheck
	s.cache.Each(api.KindDatastore, func(o api.Object) {
		ds := o.(*api.Datastore)
		if ds.Spec.Datacenter.ID == dc && (ds.Spec.Shared || ds.Spec.Host.ID == h.Metadata.ID) {
			out = append(out, api.DatastoreToCheck{ID: ds.Metadata.ID, Path: ds.Spec.Path})
		}
	})
	return out
}

// recordDatastoreSpace keeps datastore capacity and free space current,
// writing only when they moved by more than 1 %.
func (s *Server) recordDatastoreSpace(ctx context.Context, seen []api.DatastoreSeen) {
	for _, d := range seen {
		if !d.Reachable {
			continue
		}
		o, ok := s.cache.Get(api.KindDatastore, d.ID)
		if !ok {
			continue
		}
		st := o.(*api.Datastore).Status
		if st.CapacityBytes == d.CapacityBytes && absDiff(int64(st.FreeBytes), int64(d.FreeBytes)) <= int64(d.CapacityBytes)/100 &&
			st.Alarm == alarmLevel(d.CapacityBytes, d.FreeBytes) {
			continue
		}
		_ = state.UpdateKind(ctx, s.st, nil, api.KindDatastore, d.ID, func(o api.Object) error {
			ds := o.(*api.Datastore)
			ds.Status.CapacityBytes, ds.Status.FreeBytes = d.CapacityBytes, d.FreeBytes
			ds.Status.Alarm = alarmLevel(d.CapacityBytes, d.FreeBytes)
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
func (s *Server) reconcileVMs(ctx context.Context, h *api.Host, reported []api.AgentVMState, full bool, listedAt uint64) {
	seen := make(map[string]api.AgentVMState, len(reported))
	for _, st := range reported {
		seen[st.ID] = st
	}
	var stale []api.AgentVMState
	var missing []string
	for _, vm := range s.inv.VMsOn(h.Metadata.ID) {
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
			s.log.Warn("cannot record VM state", "vm", st.ID, "err", err)
		}
	}
	for _, id := range missing {
		_ = state.UpdateKind(ctx, s.st, nil, api.KindVM, id, func(o api.Object) error {
			vm := o.(*api.VM)
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
func (s *Server) recordVMState(ctx context.Context, hostID string, st api.AgentVMState) error {
	change := inventory.VMStateChange(st)
	return state.UpdateKind(ctx, s.st, nil, api.KindVM, st.ID, func(o api.Object) error {
		if o.(*api.VM).Spec.Host.ID != hostID {
			return state.ErrUnchanged
		}
		return change(o)
	})
}

// monitorHosts (leader only) marks hosts whose heartbeats stopped as
// disconnected and their VMs as unknown. The clock is this server's: a host
// is judged by when this leader last saw its heartbeat land, and every
// host gets a full window after the leader starts.
func (s *Server) monitorHosts(ctx context.Context) {
	start := time.Now()
	lastSeen := map[string]time.Time{}
	beats := make(chan string, 1024)
	_, cancel := s.cache.Subscribe(func(ch store.Change) {
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
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-beats:
			lastSeen[id] = time.Now()
		case now := <-tick.C:
			for _, o := range s.cache.List(api.KindHost) {
				h := o.(*api.Host)
				seen, ok := lastSeen[h.Metadata.ID]
				if !ok {
					seen = start
				}
				if h.Status.Connection == api.HostConnected && now.Sub(seen) > s.cfg.HostTimeout {
					s.markDisconnected(ctx, h, now.Sub(seen))
				}
				if h.Status.FailedAt.IsZero() && now.Sub(seen) > s.haDetection(h) {
					s.declareFailed(ctx, h, now.Sub(seen))
				}
			}
		}
	}
}

func (s *Server) markDisconnected(ctx context.Context, h *api.Host, silent time.Duration) {
	_, err := s.leaderTxn().Update(h, func() *api.Host {
		upd := store.Clone(h)
		upd.Status.Connection = api.HostDisconnected
		return upd
	}()).Commit(ctx)
	if err != nil {
		return // it changed (maybe a heartbeat): judge again next tick
	}
	s.log.Warn("host disconnected: no heartbeat", "host", h.Metadata.Name, "silent", silent.Round(time.Second))
	go s.markVMsUnknown(ctx, h) // not in the way of judging the other hosts
}

// markVMsUnknown shows the VMs of a host that stopped reporting as unknown.
func (s *Server) markVMsUnknown(ctx context.Context, h *api.Host) {
	msg := fmt.Sprintf("host %s is disconnected", h.Metadata.Name)
	for _, vm := range s.inv.VMsOn(h.Metadata.ID) {
		if vm.Status.PowerState == api.PowerUnknown {
			continue
		}
		_ = state.UpdateKind(ctx, s.st, nil, api.KindVM, vm.Metadata.ID, func(o api.Object) error {
			v := o.(*api.VM)
			if v.Spec.Host.ID != h.Metadata.ID || v.Status.PowerState == api.PowerUnknown {
				return state.ErrUnchanged // restarted elsewhere by HA meanwhile
			}
			inventory.SetPower(v, api.PowerUnknown, msg)
			return nil
		})
	}
}
