package server

import (
	"sort"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/storage"
)

// viewer fills in what an answer shows but the store does not keep: the
// current names of referenced objects and sums over VMs (from the tally).
// Objects from the cache are shared, so it works on copies.
type viewer struct {
	s *Server
}

// reachers lists the hosts that report reaching a datastore.
func (v *viewer) reachers(dsID string) []api.Ref {
	var out []api.Ref
	v.s.cache.Each(api.KindHost, func(o api.Object) {
		h := o.(*api.Host)
		for _, ds := range h.Status.Datastores {
			if ds.ID == dsID {
				out = append(out, api.Ref{ID: h.Metadata.ID, Name: h.Metadata.Name})
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
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
		t := v.s.tally
		st := api.ClusterStatus{VMs: t.ClusterVMs(c.Metadata.ID)}
		state.Each(v.s.st, func(h *api.Host) {
			if h.Spec.Cluster.ID != c.Metadata.ID {
				return
			}
			st.Hosts++
			if h.Status.Connection == api.HostConnected {
				st.ConnectedHosts++
			}
			st.CPUs += h.Status.CPUs
			st.MemoryBytes += h.Status.MemoryBytes
			ht := t.Host(h.Metadata.ID)
			st.UsedCPUs += ht.OnCPUs
			st.UsedMemory += api.Size(ht.OnMem)
		})
		c.Status = st
		return &c
	case *api.Host:
		c := *o
		c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
		ht := v.s.tally.Host(c.Metadata.ID)
		c.Status.UsedCPUs, c.Status.UsedMemory = ht.OnCPUs, api.Size(ht.OnMem)
		c.Status.VMs = len(v.s.tally.VMsOn(c.Metadata.ID))
		c.Status.Datastores = make([]api.Ref, len(o.Status.Datastores))
		for i, d := range o.Status.Datastores {
			c.Status.Datastores[i] = v.ref(api.KindDatastore, d)
		}
		return &c
	case *api.Datastore:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		c.Spec.Host = v.ref(api.KindHost, c.Spec.Host)
		prov, alloc := v.s.tally.DatastoreBytes(c.Metadata.ID)
		c.Status.ProvisionedBytes, c.Status.AllocatedBytes = api.Size(prov), api.Size(alloc)
		c.Status.Hosts = v.reachers(c.Metadata.ID)
		if c.Status.CapacityBytes > 0 {
			c.Status.OvercommitRatio = float64(c.Status.ProvisionedBytes) / float64(c.Status.CapacityBytes)
		}
		return &c
	case *api.PortGroup:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		c.Status.Ports = v.s.tally.PortGroupPorts(c.Metadata.ID)
		return &c
	case *api.Image:
		c := *o
		c.Spec.Datastore = v.ref(api.KindDatastore, c.Spec.Datastore)
		return &c
	case *api.VM:
		c := *o
		c.Spec.Image = v.ref(api.KindImage, c.Spec.Image)
		c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
		c.Spec.Host = v.ref(api.KindHost, c.Spec.Host)
		c.Spec.Disks = make([]api.VMDisk, len(o.Spec.Disks))
		for i, d := range o.Spec.Disks {
			d.Datastore = v.ref(api.KindDatastore, d.Datastore)
			c.Spec.Disks[i] = d
		}
		c.Status.Storage = storage.VMStorage(o)
		// A damaged tree is shown as it is stored, for the reader to see
		// (the CLI checks it too); the snapshot calls refuse it.
		if snaps, cur, err := storage.VisibleTree(o); err == nil {
			c.Spec.Snapshots, c.Spec.CurrentSnapshotID = snaps, cur
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
