package server

import (
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// tally keeps sums over the VMs of the inventory current as the cache
// changes, so that placement, views and heartbeats never scan every VM.
// It is updated under the cache's lock (store.Cache.Observe): once a read
// has synced the cache, the tally includes the same writes.
type tally struct {
	mu            sync.RWMutex
	hosts         map[string]*hostTally // by host ID
	clusterVMs    map[string]int
	dsProvisioned map[string]int64
	dsAllocated   map[string]int64
	pgPorts       map[string]int
	macs          map[string]string // MAC → VM ID
	// namesEpoch changes whenever an object VMs refer to is renamed or
	// removed, which invalidates answers that carry its name.
	namesEpoch uint64
}

type hostTally struct {
	vms               map[string]bool // VM IDs
	allocCPUs, onCPUs int
	allocMem, onMem   int64
}

func newTally() *tally {
	return &tally{hosts: map[string]*hostTally{}, clusterVMs: map[string]int{}, dsProvisioned: map[string]int64{},
		pgPorts: map[string]int{}, macs: map[string]string{}}
}

func (t *tally) observe(ch store.Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ch.Kind != api.KindVM {
		if ch.Kind != api.KindTask && ch.Prev != nil && (ch.Obj == nil || ch.Obj.GetMeta().Name != ch.Prev.GetMeta().Name) {
			t.namesEpoch++
		}
		return
	}
	if ch.Prev != nil {
		t.count(ch.Prev.(*api.VM), -1)
	}
	if ch.Obj != nil {
		t.count(ch.Obj.(*api.VM), 1)
	}
}

func (t *tally) count(vm *api.VM, sign int) {
	h := t.hosts[vm.Spec.Host.ID]
	if h == nil {
		h = &hostTally{vms: map[string]bool{}}
		t.hosts[vm.Spec.Host.ID] = h
	}
	if sign > 0 {
		h.vms[vm.Metadata.ID] = true
	} else {
		delete(h.vms, vm.Metadata.ID)
	}
	h.allocCPUs += sign * vm.Spec.CPUs
	h.allocMem += int64(sign) * int64(vm.Spec.MemoryBytes)
	if holdsResources(vm) {
		h.onCPUs += sign * vm.Spec.CPUs
		h.onMem += int64(sign) * int64(vm.Spec.MemoryBytes)
	}
	t.clusterVMs[vm.Spec.Cluster.ID] += sign
	for _, d := range vm.Spec.Disks {
		t.dsProvisioned[d.Datastore.ID] += int64(sign) * int64(d.SizeBytes)
	}
	t.countStorage(vm, int64(sign))
	for _, n := range vm.Spec.NICs {
		t.pgPorts[n.PortGroup.ID] += sign
		if sign > 0 {
			t.macs[n.MAC] = vm.Metadata.ID
		} else if t.macs[n.MAC] == vm.Metadata.ID {
			delete(t.macs, n.MAC)
		}
	}
}

// host returns a copy of a host's sums.
func (t *tally) host(id string) hostTally {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if h := t.hosts[id]; h != nil {
		c := *h
		c.vms = nil
		return c
	}
	return hostTally{}
}

// vmsOn lists the IDs of the VMs registered on a host.
func (t *tally) vmsOn(hostID string) []string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	h := t.hosts[hostID]
	if h == nil {
		return nil
	}
	out := make([]string, 0, len(h.vms))
	for id := range h.vms {
		out = append(out, id)
	}
	return out
}

func (t *tally) macInUse(mac string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.macs[mac]
	return ok
}

func (t *tally) epoch() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.namesEpoch
}
