package server

import (
	"sort"

	"github.com/vdc-project/vdc/api"
)

// viewer fills in what an answer shows but the store does not keep:
// the current names of referenced objects and sums over VMs. Objects from
// the cache are shared, so it works on copies.
type viewer struct {
	s   *Server
	use *usage
}

// usage sums the VMs of the inventory, once per request.
type usage struct {
	hostOnCPUs    map[string]int
	hostOnMem     map[string]int64
	hostVMs       map[string]int
	dsProvisioned map[string]int64
	pgPorts       map[string]int
	clusterVMs    map[string]int
	hostReachesDS map[string][]api.Ref // datastore ID → hosts
}

func (v *viewer) usage() *usage {
	if v.use != nil {
		return v.use
	}
	u := &usage{
		hostOnCPUs: map[string]int{}, hostOnMem: map[string]int64{}, hostVMs: map[string]int{},
		dsProvisioned: map[string]int64{}, pgPorts: map[string]int{}, clusterVMs: map[string]int{},
		hostReachesDS: map[string][]api.Ref{},
	}
	v.s.cache.Each(api.KindVM, func(o api.Object) {
		vm := o.(*api.VM)
		h := vm.Spec.Host.ID
		u.hostVMs[h]++
		u.clusterVMs[vm.Spec.Cluster.ID]++
		if holdsResources(vm) {
			u.hostOnCPUs[h] += vm.Spec.CPUs
			u.hostOnMem[h] += int64(vm.Spec.MemoryBytes)
		}
		for _, d := range vm.Spec.Disks {
			u.dsProvisioned[d.Datastore.ID] += int64(d.SizeBytes)
		}
		for _, n := range vm.Spec.NICs {
			u.pgPorts[n.PortGroup.ID]++
		}
	})
	v.s.cache.Each(api.KindHost, func(o api.Object) {
		h := o.(*api.Host)
		for _, ds := range h.Status.Datastores {
			u.hostReachesDS[ds.ID] = append(u.hostReachesDS[ds.ID], api.Ref{ID: h.Metadata.ID, Name: h.Metadata.Name})
		}
	})
	v.use = u
	return u
}

// holdsResources says whether a VM counts against its host's capacity:
// powered on, suspended (its memory is still held) or unknown (it may run).
func holdsResources(vm *api.VM) bool {
	switch vm.Status.PowerState {
	case api.PowerOn, api.PowerSuspended:
		return true
	case api.PowerUnknown:
		return vm.Status.LastKnownPowerState != api.PowerOff
	}
	return false
}

// ref refreshes a reference's name.
func (v *viewer) ref(kind string, r api.Ref) api.Ref {
	if r.ID == "" {
		return r
	}
	if o, ok := v.s.cache.Get(kind, r.ID); ok {
		r.Name = o.GetMeta().Name
	}
	return r
}

// view returns a copy of obj ready to be sent.
func (v *viewer) view(obj api.Object) api.Object {
	switch o := obj.(type) {
	case *api.Datacenter:
		c := *o
		return &c
	case *api.Cluster:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		st := api.ClusterStatus{VMs: v.usage().clusterVMs[c.Metadata.ID]}
		v.s.cache.Each(api.KindHost, func(ho api.Object) {
			h := ho.(*api.Host)
			if h.Spec.Cluster.ID != c.Metadata.ID {
				return
			}
			st.Hosts++
			if h.Status.Connection == api.HostConnected {
				st.ConnectedHosts++
			}
			st.CPUs += h.Status.CPUs
			st.MemoryBytes += h.Status.MemoryBytes
			st.UsedCPUs += v.usage().hostOnCPUs[h.Metadata.ID]
			st.UsedMemory += api.Size(v.usage().hostOnMem[h.Metadata.ID])
		})
		c.Status = st
		return &c
	case *api.Host:
		c := *o
		c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
		u := v.usage()
		c.Status.UsedCPUs = u.hostOnCPUs[c.Metadata.ID]
		c.Status.UsedMemory = api.Size(u.hostOnMem[c.Metadata.ID])
		c.Status.VMs = u.hostVMs[c.Metadata.ID]
		c.Status.Datastores = make([]api.Ref, len(o.Status.Datastores))
		for i, d := range o.Status.Datastores {
			c.Status.Datastores[i] = v.ref(api.KindDatastore, d)
		}
		return &c
	case *api.Datastore:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		c.Spec.Host = v.ref(api.KindHost, c.Spec.Host)
		c.Status.ProvisionedBytes = api.Size(v.usage().dsProvisioned[c.Metadata.ID])
		c.Status.Hosts = append([]api.Ref(nil), v.usage().hostReachesDS[c.Metadata.ID]...)
		sort.Slice(c.Status.Hosts, func(i, j int) bool { return c.Status.Hosts[i].Name < c.Status.Hosts[j].Name })
		return &c
	case *api.PortGroup:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		c.Status.Ports = v.usage().pgPorts[c.Metadata.ID]
		return &c
	case *api.VM:
		c := *o
		c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
		c.Spec.Host = v.ref(api.KindHost, c.Spec.Host)
		c.Spec.Disks = make([]api.VMDisk, len(o.Spec.Disks))
		for i, d := range o.Spec.Disks {
			d.Datastore = v.ref(api.KindDatastore, d.Datastore)
			c.Spec.Disks[i] = d
		}
		c.Spec.NICs = make([]api.VMNIC, len(o.Spec.NICs))
		for i, n := range o.Spec.NICs {
			n.PortGroup = v.ref(api.KindPortGroup, n.PortGroup)
			c.Spec.NICs[i] = n
		}
		return &c
	case *api.Task:
		c := *o
		if t, ok := v.s.cache.Get(c.Target.Kind, c.Target.ID); ok {
			c.Target.Name = t.GetMeta().Name
		}
		return &c
	}
	return obj
}
