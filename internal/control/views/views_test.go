package views_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/views"
	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/store"
)

const gib = api.Size(1 << 30)

type world struct {
	st     *state.State
	v      *views.Viewer
	lists  *views.ListCache
	dc     *api.Datacenter
	cl     *api.Cluster
	h1, h2 *api.Host
	ds     *api.Datastore
}

// newWorld: datacenter dc1, cluster c1 with hosts h1 (connected, 4 CPUs,
// 8 GiB, reaching ds1) and h2 (disconnected, 2 CPUs, 4 GiB, reaching
// ds1), datastore ds1 of 100 GiB.
func newWorld(t *testing.T) *world {
	t.Helper()
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	v := views.New(st, tally)
	lists := views.NewListCache(v)
	st.Cache.Observe(lists.Observe)
	dc := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc1"}}
	cl := &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "c1"}, Spec: api.ClusterSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}}}
	ds := &api.Datastore{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "ds1"},
		Spec:   api.DatastoreSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, Path: "/srv/ds1", Shared: true},
		Status: api.DatastoreStatus{CapacityBytes: 100 * gib, FreeBytes: 90 * gib}}
	host := func(name, conn string, cpus int, mem api.Size) *api.Host {
		return &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.HostSpec{Cluster: api.Ref{ID: cl.Metadata.ID}},
			Status: api.HostStatus{Connection: conn, CPUs: cpus, MemoryBytes: mem, Datastores: []api.Ref{{ID: ds.Metadata.ID}}}}
	}
	w := &world{st: st, v: v, lists: lists, dc: dc, cl: cl, ds: ds,
		h1: host("h1", api.HostConnected, 4, 8*gib), h2: host("h2", api.HostDisconnected, 2, 4*gib)}
	w.create(t, dc, cl, ds, w.h2, w.h1)
	return w
}

func (w *world) create(t *testing.T, objs ...api.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		if _, err := w.st.Store.Create(ctx, o); err != nil {
			t.Fatalf("create %s %s: %v", o.Kind(), o.GetMeta().Name, err)
		}
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
}

// vm on h1 with one disk per size on ds1.
func (w *world) vm(name, power string, cpus int, mem api.Size, disks ...api.Size) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name},
		Spec:   api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}, Host: api.Ref{ID: w.h1.Metadata.ID}, CPUs: cpus, MemoryBytes: mem},
		Status: api.VMStatus{PowerState: power}}
	for i, s := range disks {
		name := "disk" + string(rune('0'+i))
		vm.Spec.Disks = append(vm.Spec.Disks, api.VMDisk{Name: name, SizeBytes: s, Datastore: api.Ref{ID: w.ds.Metadata.ID}})
		vm.Status.Disks = append(vm.Status.Disks, api.DiskStatus{Name: name, AllocatedBytes: s / 4})
	}
	return vm
}

func (w *world) get(t *testing.T, kind, id string) api.Object {
	t.Helper()
	o, ok := w.st.Cache.Get(kind, id)
	if !ok {
		t.Fatalf("%s %s not in the cache", kind, id)
	}
	return o
}

func TestDatastoreProvisionedAllocatedAndOvercommit(t *testing.T) {
	w := newWorld(t)
	w.create(t, w.vm("a", api.PowerOn, 1, gib, 80*gib, 40*gib), w.vm("b", api.PowerOff, 1, gib, 30*gib))
	got := w.v.View(w.get(t, api.KindDatastore, w.ds.Metadata.ID)).(*api.Datastore)
	if got.Status.ProvisionedBytes != 150*gib || got.Status.AllocatedBytes != 150*gib/4 {
		t.Errorf("ds1: provisioned %s, allocated %s; want 150 GiB and 37.5 GiB", got.Status.ProvisionedBytes, got.Status.AllocatedBytes)
	}
	if got.Status.OvercommitRatio != 1.5 {
		t.Errorf("ds1: overcommit %v, want 1.5", got.Status.OvercommitRatio)
	}
	if len(got.Status.Hosts) != 2 || got.Status.Hosts[0].Name != "h1" || got.Status.Hosts[1].Name != "h2" {
		t.Errorf("ds1 is reached by %+v, want h1 and h2 in order", got.Status.Hosts)
	}
	if got.Spec.Datacenter.Name != "dc1" {
		t.Errorf("ds1's datacenter is named %q, want dc1", got.Spec.Datacenter.Name)
	}
	if cached := w.get(t, api.KindDatastore, w.ds.Metadata.ID).(*api.Datastore); cached.Status.ProvisionedBytes != 0 || cached.Spec.Datacenter.Name != "" {
		t.Errorf("the view changed the cache's shared object: %+v", cached.Status)
	}
}

func TestClusterHostAndVMCounts(t *testing.T) {
	w := newWorld(t)
	w.create(t, w.vm("a", api.PowerOn, 2, 2*gib), w.vm("b", api.PowerOn, 1, gib), w.vm("c", api.PowerOff, 4, 4*gib))
	got := w.v.View(w.get(t, api.KindCluster, w.cl.Metadata.ID)).(*api.Cluster)
	want := api.ClusterStatus{Hosts: 2, ConnectedHosts: 1, VMs: 3, CPUs: 6, MemoryBytes: 12 * gib, UsedCPUs: 3, UsedMemory: 3 * gib}
	if got.Status != want {
		t.Errorf("c1: %+v, want %+v", got.Status, want)
	}
	h := w.v.View(w.get(t, api.KindHost, w.h1.Metadata.ID)).(*api.Host)
	if h.Status.VMs != 3 || h.Status.UsedCPUs != 3 || h.Status.UsedMemory != 3*gib || h.Spec.Cluster.Name != "c1" ||
		len(h.Status.Datastores) != 1 || h.Status.Datastores[0].Name != "ds1" {
		t.Errorf("h1: %+v %+v", h.Spec, h.Status)
	}
}

func TestListCacheFollowsRenames(t *testing.T) {
	w := newWorld(t)
	vm := w.vm("a", api.PowerOff, 1, gib, 10*gib)
	w.create(t, vm)
	list := func() api.VM {
		t.Helper()
		var buf bytes.Buffer
		w.lists.Write(&buf, []api.Object{w.get(t, api.KindVM, vm.Metadata.ID)}, 7)
		var l api.List[api.VM]
		if err := json.Unmarshal(buf.Bytes(), &l); err != nil || len(l.Items) != 1 || l.Revision != 7 {
			t.Fatalf("list %s: %v", buf.String(), err)
		}
		return l.Items[0]
	}
	if got := list(); got.Spec.Host.Name != "h1" || got.Status.Storage == nil || got.Status.Storage.CapacityBytes != 10*gib {
		t.Fatalf("listed vm: %+v %+v", got.Spec.Host, got.Status.Storage)
	}
	// Renaming the host changes no VM's revision; the listed view follows.
	ctx := context.Background()
	err := state.Update(ctx, w.st, nil, w.h1.Metadata.ID, func(h *api.Host) error { h.Metadata.Name = "h1-renamed"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := list(); got.Spec.Host.Name != "h1-renamed" {
		t.Errorf("after the rename the list shows host %q", got.Spec.Host.Name)
	}
}

// A VM's view names each NIC's tap as the agent makes it (by the NIC's
// number, so it stays when another NIC goes): one for a NIC on a
// switch's port group, none for a NAT one.
func TestVMViewNamesTheTapsOfNICsOnSwitches(t *testing.T) {
	w := newWorld(t)
	sw := &api.Switch{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dvs1"}, Spec: api.SwitchSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Cluster: api.Ref{ID: w.cl.Metadata.ID}}}
	web := &api.PortGroup{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "web"}, Spec: api.PortGroupSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Switch: api.Ref{ID: sw.Metadata.ID}, VNI: 5001}}
	nat := &api.PortGroup{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "nat"}, Spec: api.PortGroupSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}}}
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "vm1"}, Spec: api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID},
		NICs: []api.VMNIC{{Name: "nic0", PortGroup: api.Ref{ID: nat.Metadata.ID}}, {Name: "nic2", PortGroup: api.Ref{ID: web.Metadata.ID}}}}}
	w.create(t, sw, web, nat, vm)
	got := w.v.View(vm).(*api.VM).Status.NICs
	want := []api.NICStatus{{Name: "nic0"}, {Name: "nic2", Tap: netconf.TapName(vm.Metadata.ID, 2)}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("NIC status %+v, want %+v", got, want)
	}
}
