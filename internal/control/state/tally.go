package state

import (
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// Tally keeps sums over the VMs of the inventory current as the cache
// changes, so that placement, views and heartbeats never scan every VM.
// It is updated under the cache's lock (store.Cache.Observe): once a read
// has synced the cache, the tally includes the same writes.
type Tally struct {
	mu            sync.RWMutex
	hosts         map[string]*HostSums // by host ID
	clusterVMs    map[string]int
	folderVMs     map[string]int // by folder ID ("": the top levels)
	dsProvisioned map[string]int64
	dsAllocated   map[string]int64
	pgPorts       map[string]int
	macs          map[string]string // MAC → VM ID
	// namesEpoch changes whenever an object VMs refer to is renamed or
	// removed, which invalidates answers that carry its name.
	namesEpoch uint64
}

// HostSums are the sums over the VMs registered on a host: all of them
// (Alloc) and those that hold resources, running or suspended (On).
type HostSums struct {
	vms               map[string]bool // VM IDs
	AllocCPUs, OnCPUs int
	AllocMem, OnMem   int64
}

// NewTally returns an empty tally; feed it with Cache.Observe(t.Observe).
func NewTally() *Tally {
	return &Tally{hosts: map[string]*HostSums{}, clusterVMs: map[string]int{}, folderVMs: map[string]int{}, dsProvisioned: map[string]int64{},
		pgPorts: map[string]int{}, macs: map[string]string{}}
}

// Observe counts a change of the cache.
func (t *Tally) Observe(ch store.Change) {
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

func (t *Tally) count(vm *api.VM, sign int) {
	h := t.hosts[vm.Spec.Host.ID]
	if h == nil {
		h = &HostSums{vms: map[string]bool{}}
		t.hosts[vm.Spec.Host.ID] = h
	}
	if sign > 0 {
		h.vms[vm.Metadata.ID] = true
	} else {
		delete(h.vms, vm.Metadata.ID)
	}
	h.AllocCPUs += sign * vm.Spec.CPUs
	h.AllocMem += int64(sign) * int64(vm.Spec.MemoryBytes)
	if HoldsResources(vm) {
		h.OnCPUs += sign * vm.Spec.CPUs
		h.OnMem += int64(sign) * int64(vm.Spec.MemoryBytes)
	}
	t.clusterVMs[vm.Spec.Cluster.ID] += sign
	t.folderVMs[vm.Spec.Folder.ID] += sign
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

// Host returns a copy of a host's sums.
func (t *Tally) Host(id string) HostSums {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if h := t.hosts[id]; h != nil {
		c := *h
		c.vms = nil
		return c
	}
	return HostSums{}
}

// VMsOn lists the IDs of the VMs registered on a host.
func (t *Tally) VMsOn(hostID string) []string {
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

// MACInUse says whether a VM has a NIC with this MAC address.
func (t *Tally) MACInUse(mac string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.macs[mac]
	return ok
}

// Epoch changes whenever an object VMs refer to is renamed or removed.
func (t *Tally) Epoch() uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.namesEpoch
}

// countStorage adds (sign 1) or takes away (-1) a VM's provisioned and
// allocated bytes per datastore; it runs under the tally's lock.
func (t *Tally) countStorage(vm *api.VM, sign int64) {
	for _, sn := range vm.Spec.Snapshots {
		for _, d := range sn.Disks {
			t.dsProvisioned[d.Datastore.ID] += sign * int64(d.SizeBytes)
		}
		if sn.Memory && len(sn.Disks) > 0 {
			t.dsProvisioned[sn.Disks[0].Datastore.ID] += sign * int64(sn.MemoryBytes)
		}
	}
	if t.dsAllocated == nil {
		t.dsAllocated = map[string]int64{}
	}
	for _, ds := range vm.Status.Disks {
		for _, d := range vm.Spec.Disks {
			if d.Name == ds.Name {
				t.dsAllocated[d.Datastore.ID] += sign * int64(ds.AllocatedBytes+ds.SnapshotBytes)
			}
		}
	}
}

// DatastoreBytes returns what the VMs provisioned on a datastore and what
// their disks allocate there.
func (t *Tally) DatastoreBytes(id string) (provisioned, allocated int64) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.dsProvisioned[id], t.dsAllocated[id]
}

// PortGroupPorts counts the NICs on a port group.
func (t *Tally) PortGroupPorts(id string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.pgPorts[id]
}

// HoldsResources says whether a VM counts against its host's running
// capacity: on or suspended, or unknown after last being seen so.
func HoldsResources(vm *api.VM) bool {
	switch vm.Status.PowerState {
	case api.PowerOn, api.PowerSuspended:
		return true
	case api.PowerUnknown:
		return vm.Status.LastKnownPowerState != api.PowerOff
	}
	return false
}

// ClusterVMs counts the VMs of a cluster.
func (t *Tally) ClusterVMs(id string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.clusterVMs[id]
}

// FolderVMs counts the VMs directly in a folder.
func (t *Tally) FolderVMs(id string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.folderVMs[id]
}
