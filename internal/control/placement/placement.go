// Package placement decides where VMs go and whether a host can power one
// on: Place picks a host for a new VM (or checks the one named) and
// PlaceNew also records it with its MAC claims; Admit, AdmitGrow and
// AdmitHA check a power-on, a hot-add and HA admission control. Decisions
// are made one at a time and each holds a reservation until the caller's
// release, once the cache shows the write the decision led to: two
// requests at once cannot both take the last room on a host.
//
// placement depends on internal/control/state and internal/scheduler (the
// pure algorithms) only.
package placement

import (
	"context"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/scheduler"
	"github.com/vdc-project/vdc/internal/store"
)

// Placer makes placement and power-on decisions.
type Placer struct {
	st    *state.State
	tally *state.Tally

	mu      sync.Mutex
	pending map[string]reservation // by VM ID
}

type reservation struct {
	host string
	cpus int
	mem  int64
	on   bool // a power-on: counts against running capacity
}

// New returns a placer over the inventory st holds and tally sums.
func New(st *state.State, tally *state.Tally) *Placer {
	return &Placer{st: st, tally: tally, pending: map[string]reservation{}}
}

// Hosts is the scheduler's view of a cluster's hosts now, reservations
// included.
func (p *Placer) Hosts(clusterID string) []scheduler.Host {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snapshot(clusterID)
}

// snapshot builds the scheduler's view of a cluster's hosts; the caller
// holds p.mu.
func (p *Placer) snapshot(clusterID string) []scheduler.Host {
	var hosts []scheduler.Host
	state.Each(p.st, func(h *api.Host) {
		if h.Spec.Cluster.ID != clusterID {
			return
		}
		sh := scheduler.Host{
			ID: h.Metadata.ID, Name: h.Metadata.Name,
			Connected: h.Status.Connection == api.HostConnected, Maintenance: h.Spec.Maintenance,
			CPUs: h.Status.CPUs, MemoryBytes: int64(h.Status.MemoryBytes), Datastores: map[string]bool{},
		}
		for _, d := range h.Status.Datastores {
			sh.Datastores[d.ID] = true
		}
		hosts = append(hosts, sh)
	})
	byID := map[string]*scheduler.Host{}
	for i := range hosts {
		byID[hosts[i].ID] = &hosts[i]
		t := p.tally.Host(hosts[i].ID)
		hosts[i].AllocCPUs, hosts[i].AllocMemory = t.AllocCPUs, t.AllocMem
		hosts[i].OnCPUs, hosts[i].OnMemory = t.OnCPUs, t.OnMem
	}
	for id, r := range p.pending {
		h := byID[r.host]
		if h == nil {
			continue
		}
		vm, counted := state.Get[*api.VM](p.st, id)
		if !counted {
			h.AllocCPUs += r.cpus
			h.AllocMemory += r.mem
		}
		// A power-on the cache already shows on this host is in the tally.
		if r.on && !(counted && vm.Spec.Host.ID == r.host && state.HoldsResources(vm)) {
			h.OnCPUs += r.cpus
			h.OnMemory += r.mem
		}
	}
	return hosts
}

func request(cl *api.Cluster, cpus int, mem int64, datastores []string) scheduler.Request {
	return scheduler.Request{CPUs: cpus, MemoryBytes: mem, Datastores: datastores,
		CPUOvercommit: cl.Spec.CPUOvercommit, MemoryOvercommit: cl.Spec.MemoryOvercommit}
}

// Place picks a host of cluster cl for a new VM that needs the datastores
// named, or checks the one the user named (hostID), and reserves its share
// until release is called. A VM put on a named host needs room there only
// if it is to be powered on: registering a powered-off VM takes nothing.
func (p *Placer) Place(vm *api.VM, cl *api.Cluster, hostID string, datastores []string, powerOn bool) (string, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := request(cl, vm.Spec.CPUs, int64(vm.Spec.MemoryBytes), datastores)
	hosts := p.snapshot(cl.Metadata.ID)
	var chosen scheduler.Host
	if hostID != "" {
		for _, h := range hosts {
			if h.ID == hostID {
				chosen = h
			}
		}
		check := req
		if !powerOn {
			check.CPUs, check.MemoryBytes = 0, 0
		}
		if ok, why := scheduler.Fits(chosen, check); !ok {
			if why == "not enough room" {
				cpus, mem := scheduler.Room(chosen, req)
				return "", nil, api.Errorf(api.ErrUnprocessable, "host %s has no room for %d vCPU and %s of memory: %d vCPU and %s free",
					chosen.Name, req.CPUs, api.Size(req.MemoryBytes), max(cpus, 0), api.Size(max(mem, 0)))
			}
			return "", nil, api.Errorf(api.ErrConflict, "host %s cannot take the VM: it is %s", chosen.Name, why)
		}
	} else {
		h, err := scheduler.Place(hosts, req)
		if err != nil {
			return "", nil, err
		}
		chosen = h
	}
	p.pending[vm.Metadata.ID] = reservation{host: chosen.ID, cpus: req.CPUs, mem: req.MemoryBytes}
	return chosen.ID, p.releaser(vm.Metadata.ID), nil
}

// PlaceNew places a new VM as Place does, on the datastores of its disks
// and the extra ones named, sets its host, and adds to txn the VM's
// creation with a claim on each of its MAC addresses (the MAC index in
// etcd keeps addresses unique even across racing requests). The caller
// commits txn, then calls release.
func (p *Placer) PlaceNew(txn *store.Txn, vm *api.VM, cl *api.Cluster, hostID string, powerOn bool, extra ...string) (func(), error) {
	var dss []string
	for _, d := range vm.Spec.Disks {
		dss = append(dss, d.Datastore.ID)
	}
	chosen, release, err := p.Place(vm, cl, hostID, append(dss, extra...), powerOn)
	if err != nil {
		return nil, err
	}
	vm.Spec.Host = api.Ref{ID: chosen}
	txn.Create(vm)
	ClaimMACs(txn, vm)
	return release, nil
}

// MACKey is the store key that claims a MAC address for a VM.
func MACKey(mac string) string { return store.SysPrefix + "macs/" + mac }

// IPKey is the store key that claims a port group's address for a VM.
func IPKey(portGroupID, ip string) string { return store.SysPrefix + "ips/" + portGroupID + "/" + ip }

// ClaimMACs adds to txn a claim on each MAC address of vm's NICs, and on
// each NIC's address on its port group; the commit fails with a conflict
// if another VM holds one.
func ClaimMACs(txn *store.Txn, vm *api.VM) {
	for _, n := range vm.Spec.NICs {
		txn.Claim(MACKey(n.MAC), vm.Metadata.ID, api.Errorf(api.ErrConflict, "MAC address %s is already in use", n.MAC))
		if n.IPv4 != "" {
			txn.Claim(IPKey(n.PortGroup.ID, n.IPv4), vm.Metadata.ID, api.Errorf(api.ErrConflict, "address %s is already in use on the port group", n.IPv4))
		}
	}
}

// Admit checks that host h can power on vm. With hold, it keeps the room
// until release is called (once the power state is recorded).
func (p *Placer) Admit(vm *api.VM, cl *api.Cluster, h *api.Host, hold bool) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := request(cl, vm.Spec.CPUs, int64(vm.Spec.MemoryBytes), nil)
	for _, sh := range p.snapshot(cl.Metadata.ID) {
		if sh.ID != h.Metadata.ID {
			continue
		}
		if ok, why := scheduler.Fits(sh, req); !ok {
			if why == "not enough room" {
				cpus, mem := scheduler.Room(sh, req)
				return nil, api.Errorf(api.ErrUnprocessable, "cannot power on vm %s: host %s has room for %d vCPU and %s of memory, the VM needs %d vCPU and %s",
					vm.Metadata.Name, h.Metadata.Name, max(cpus, 0), api.Size(max(mem, 0)), vm.Spec.CPUs, vm.Spec.MemoryBytes)
			}
			return nil, api.Errorf(api.ErrConflict, "cannot power on vm %s: host %s is %s", vm.Metadata.Name, h.Metadata.Name, why)
		}
		if !hold {
			return func() {}, nil
		}
		p.pending[vm.Metadata.ID] = reservation{host: h.Metadata.ID, cpus: vm.Spec.CPUs, mem: int64(vm.Spec.MemoryBytes), on: true}
		return p.releaser(vm.Metadata.ID), nil
	}
	return nil, api.Errorf(api.ErrConflict, "cannot power on vm %s: host %s is not in cluster %s", vm.Metadata.Name, h.Metadata.Name, cl.Metadata.Name)
}

// AdmitGrow checks that the host of a running VM has room for it to grow
// by cpus and mem (a hot-add), under the cluster's overcommit ratios.
// With hold, it keeps that room until release is called (once the new
// size is recorded).
func (p *Placer) AdmitGrow(vm *api.VM, cl *api.Cluster, h *api.Host, cpus int, mem int64, hold bool) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := request(cl, cpus, mem, nil)
	for _, sh := range p.snapshot(cl.Metadata.ID) {
		if sh.ID != h.Metadata.ID {
			continue
		}
		if c, m := scheduler.Room(sh, req); c < cpus || m < mem {
			return nil, api.Errorf(api.ErrUnprocessable, "cannot hot-add to vm %s: host %s has room for %d more vCPU and %s more memory, the VM needs %d vCPU and %s more",
				vm.Metadata.Name, h.Metadata.Name, max(c, 0), api.Size(max(m, 0)), cpus, api.Size(mem))
		}
		if !hold {
			return func() {}, nil
		}
		// Counted on top of the VM until the cache shows its new size.
		key := vm.Metadata.ID + "/grow"
		p.pending[key] = reservation{host: h.Metadata.ID, cpus: cpus, mem: mem, on: true}
		return p.releaser(key), nil
	}
	return nil, api.Errorf(api.ErrConflict, "cannot hot-add to vm %s: host %s is not in cluster %s", vm.Metadata.Name, h.Metadata.Name, cl.Metadata.Name)
}

// AdmitHA is HA admission control: a power-on of cand (on its host) that
// would leave cluster cl unable to restart its VMs after the failures it
// must tolerate is refused. others are the cluster's other VMs that hold
// resources.
func (p *Placer) AdmitHA(vm *api.VM, cl *api.Cluster, cand scheduler.HAVM, others []scheduler.HAVM) error {
	ha := cl.Spec.HA
	if !ha.On() || ha.AdmissionControl.Policy == api.AdmissionOff || ha.AdmissionControl.Policy == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	hosts := p.snapshot(cl.Metadata.ID)
	// The snapshot counts this power-on as pending when a task holds it.
	if r, ok := p.pending[vm.Metadata.ID]; ok && r.on {
		for i := range hosts {
			if hosts[i].ID == r.host {
				hosts[i].OnCPUs -= r.cpus
				hosts[i].OnMemory -= r.mem
			}
		}
	}
	a := scheduler.Admission{HAAdmission: ha.AdmissionControl, Ratios: scheduler.Ratios{CPU: cl.Spec.CPUOvercommit, Memory: cl.Spec.MemoryOvercommit}}
	if err := scheduler.Admit(hosts, others, cand, a); err != nil {
		return api.Errorf(api.ErrUnprocessable, "cannot power on vm %s: %v", vm.Metadata.Name, err)
	}
	return nil
}

// releaser drops a reservation once the cache shows the decision.
func (p *Placer) releaser(key string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = p.st.Cache.Sync(ctx)
			cancel()
			p.mu.Lock()
			delete(p.pending, key)
			p.mu.Unlock()
		})
	}
}
