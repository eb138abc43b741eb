package views

import (
	"sort"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/network"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/netconf"
)

// Viewer fills in what an answer shows but the store does not keep: the
// current names of referenced objects and sums over VMs (from the tally).
// Objects from the cache are shared, so it works on copies.
type Viewer struct {
	st    *state.State
	tally *state.Tally
}

// New returns the viewer of st's objects, summing over VMs with tally.
func New(st *state.State, tally *state.Tally) *Viewer {
	return &Viewer{st: st, tally: tally}
}

// View returns a copy of obj ready to be sent.
func (v *Viewer) View(obj api.Object) api.Object {
	switch o := obj.(type) {
	case *api.Datacenter:
		c := *o
		return &c
	case *api.Cluster:
		return v.cluster(o)
	case *api.Host:
		return v.host(o)
	case *api.Datastore:
		return v.datastore(o)
	case *api.PortGroup:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		c.Spec.Switch = v.ref(api.KindSwitch, c.Spec.Switch)
		c.Status.Ports = v.tally.PortGroupPorts(c.Metadata.ID)
		c.Status.Type = c.Type()
		return &c
	case *api.Switch:
		c := *o
		c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
		c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
		c.Status = api.SwitchStatus{PortGroups: network.PortGroups(v.st, o), Hosts: network.Realization(v.st, o)}
		return &c
	case *api.Image:
		c := *o
		c.Spec.Datastore = v.ref(api.KindDatastore, c.Spec.Datastore)
		return &c
	case *api.VM:
		return v.vm(o)
	case *api.Folder:
		return v.folder(o)
	case *api.Task:
		c := *o
		if t, ok := v.st.Cache.Get(c.Target.Kind, c.Target.ID); ok {
			c.Target.Name = t.GetMeta().Name
		}
		return &c
	}
	return obj
}

// ref refreshes a reference's name.
func (v *Viewer) ref(kind string, r api.Ref) api.Ref {
	if r.ID == "" {
		return r
	}
	if o, ok := v.st.Cache.Get(kind, r.ID); ok {
		r.Name = o.GetMeta().Name
	}
	return r
}

// cluster sums its hosts' capacity and what its powered-on VMs use.
func (v *Viewer) cluster(o *api.Cluster) *api.Cluster {
	c := *o
	c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
	st := api.ClusterStatus{VMs: v.tally.ClusterVMs(c.Metadata.ID)}
	state.Each(v.st, func(h *api.Host) {
		if h.Spec.Cluster.ID != c.Metadata.ID {
			return
		}
		st.Hosts++
		if h.Status.Connection == api.HostConnected {
			st.ConnectedHosts++
		}
		st.CPUs += h.Status.CPUs
		st.MemoryBytes += h.Status.MemoryBytes
		ht := v.tally.Host(h.Metadata.ID)
		st.UsedCPUs += ht.OnCPUs
		st.UsedMemory += api.Size(ht.OnMem)
	})
	c.Status = st
	return &c
}

// host adds what its VMs use and names its datastores.
func (v *Viewer) host(o *api.Host) *api.Host {
	c := *o
	c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
	ht := v.tally.Host(c.Metadata.ID)
	c.Status.UsedCPUs, c.Status.UsedMemory = ht.OnCPUs, api.Size(ht.OnMem)
	c.Status.VMs = len(v.tally.VMsOn(c.Metadata.ID))
	c.Status.Datastores = make([]api.Ref, len(o.Status.Datastores))
	for i, d := range o.Status.Datastores {
		c.Status.Datastores[i] = v.ref(api.KindDatastore, d)
	}
	return &c
}

// datastore adds its VMs' provisioned and allocated bytes, the overcommit
// they make and the hosts that reach it.
func (v *Viewer) datastore(o *api.Datastore) *api.Datastore {
	c := *o
	c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
	c.Spec.Host = v.ref(api.KindHost, c.Spec.Host)
	prov, alloc := v.tally.DatastoreBytes(c.Metadata.ID)
	c.Status.ProvisionedBytes, c.Status.AllocatedBytes = api.Size(prov), api.Size(alloc)
	c.Status.Hosts = v.reachers(c.Metadata.ID)
	if c.Status.CapacityBytes > 0 {
		c.Status.OvercommitRatio = float64(c.Status.ProvisionedBytes) / float64(c.Status.CapacityBytes)
	}
	return &c
}

// reachers lists the hosts that report reaching a datastore.
func (v *Viewer) reachers(dsID string) []api.Ref {
	var out []api.Ref
	state.Each(v.st, func(h *api.Host) {
		for _, ds := range h.Status.Datastores {
			if ds.ID == dsID {
				out = append(out, api.Ref{ID: h.Metadata.ID, Name: h.Metadata.Name})
			}
		}
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// vm names its references and adds its storage and snapshot tree.
func (v *Viewer) vm(o *api.VM) *api.VM {
	c := *o
	c.Spec.Image = v.ref(api.KindImage, c.Spec.Image)
	c.Spec.Cluster = v.ref(api.KindCluster, c.Spec.Cluster)
	c.Spec.Host = v.ref(api.KindHost, c.Spec.Host)
	c.Spec.Folder = v.folderRef(c.Spec.Folder)
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
	c.Status.NICs = nil
	for i, n := range o.Spec.NICs {
		n.PortGroup = v.ref(api.KindPortGroup, n.PortGroup)
		c.Spec.NICs[i] = n
		c.Status.NICs = append(c.Status.NICs, api.NICStatus{Name: n.Name, Tap: v.tap(o, i, n)})
	}
	return &c
}

// folder adds its path, the path of its parent and what it holds.
func (v *Viewer) folder(o *api.Folder) *api.Folder {
	c := *o
	c.Spec.Datacenter = v.ref(api.KindDatacenter, c.Spec.Datacenter)
	c.Spec.Parent = v.folderRef(c.Spec.Parent)
	c.Spec.Path = inventory.FolderPath(v.st, c.Metadata.ID)
	c.Status = api.FolderStatus{VMs: v.tally.FolderVMs(c.Metadata.ID)}
	state.Each(v.st, func(f *api.Folder) {
		if f.Spec.Parent.ID == c.Metadata.ID {
			c.Status.Folders++
		}
	})
	return &c
}

// folderRef names a folder by its path.
func (v *Viewer) folderRef(r api.Ref) api.Ref {
	if r.ID != "" {
		r.Name = inventory.FolderPath(v.st, r.ID)
	}
	return r
}

// tap is the tap device of the i-th NIC of vm, named as the agent names
// it (agent/network.PlugNICs: by the NIC's number, for a NIC on a
// switch's port group); "" for a NAT NIC.
func (v *Viewer) tap(vm *api.VM, i int, n api.VMNIC) string {
	pg, ok := state.Get[*api.PortGroup](v.st, n.PortGroup.ID)
	if !ok || pg.Spec.Switch.IsZero() {
		return ""
	}
	num, err := strconv.Atoi(strings.TrimPrefix(n.Name, "nic"))
	if err != nil {
		num = i
	}
	return netconf.TapName(vm.Metadata.ID, num)
}
