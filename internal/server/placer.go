package server

import (
	"context"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/scheduler"
)

// placer makes placement and power-on decisions one at a time, counting
// the decisions already made whose writes the cache has not shown yet, so
// that two concurrent requests cannot both take the last room on a host.
type placer struct {
	s       *Server
	mu      sync.Mutex
	pending map[string]reservation // by VM ID
}

type reservation struct {
	host string
	cpus int
	mem  int64
	on   bool // a power-on: counts against running capacity
}

func newPlacer(s *Server) *placer { return &placer{s: s, pending: map[string]reservation{}} }

// snapshot builds the scheduler's view of a cluster's hosts.
func (p *placer) snapshot(clusterID string) []scheduler.Host {
	byID := map[string]*scheduler.Host{}
	var hosts []scheduler.Host
	p.s.cache.Each(api.KindHost, func(o api.Object) {
		h := o.(*api.Host)
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
	for i := range hosts {
		byID[hosts[i].ID] = &hosts[i]
	}
	for i := range hosts {
		t := p.s.tally.host(hosts[i].ID)
		hosts[i].AllocCPUs, hosts[i].AllocMemory = t.allocCPUs, t.allocMem
		hosts[i].OnCPUs, hosts[i].OnMemory = t.onCPUs, t.onMem
	}
	for id, r := range p.pending {
		h := byID[r.host]
		if h == nil {
			continue
		}
		o, counted := p.s.cache.Get(api.KindVM, id)
		if !counted {
			h.AllocCPUs += r.cpus
			h.AllocMemory += r.mem
		}
		// A power-on the cache already shows on this host is in the tally.
		if r.on && !(counted && o.(*api.VM).Spec.Host.ID == r.host && holdsResources(o.(*api.VM))) {
			h.OnCPUs += r.cpus
			h.OnMemory += r.mem
		}
	}
	return hosts
}

func (p *placer) request(cl *api.Cluster, cpus int, mem int64, datastores []string) scheduler.Request {
	return scheduler.Request{CPUs: cpus, MemoryBytes: mem, Datastores: datastores,
		CPUOvercommit: cl.Spec.CPUOvercommit, MemoryOvercommit: cl.Spec.MemoryOvercommit}
}

// place picks a host for a new VM, or checks the one the user named, and
// reserves its share until release is called. A VM put on a named host
// needs room there only if it is to be powered on: registering a
// powered-off VM takes nothing.
func (p *placer) place(vmID string, cl *api.Cluster, hostID string, req scheduler.Request, powerOn bool) (string, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
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
	p.pending[vmID] = reservation{host: chosen.ID, cpus: req.CPUs, mem: req.MemoryBytes}
	return chosen.ID, p.releaser(vmID), nil
}

// admit checks that a host can power on a VM. With hold, it keeps the room
// until release is called (once the power state is recorded).
func (p *placer) admit(vm *api.VM, cl *api.Cluster, h *api.Host, hold bool) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.request(cl, vm.Spec.CPUs, int64(vm.Spec.MemoryBytes), nil)
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

// admitGrow checks that the host of a running VM has room for it to grow
// by cpus and mem (a hot-add), under the cluster's overcommit ratios.
// With hold, it keeps that room until release is called (once the new
// size is recorded).
func (p *placer) admitGrow(vm *api.VM, cl *api.Cluster, h *api.Host, cpus int, mem int64, hold bool) (func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	req := p.request(cl, cpus, mem, nil)
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

// releaser drops a reservation once the cache shows the decision.
func (p *placer) releaser(vmID string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = p.s.cache.Sync(ctx)
			cancel()
			p.mu.Lock()
			delete(p.pending, vmID)
			p.mu.Unlock()
		})
	}
}
