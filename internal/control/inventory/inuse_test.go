package inventory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/store"
)

func meta(name string) api.ObjectMeta { return api.ObjectMeta{ID: store.NewID(), Name: name} }

// TestInUse: dc1 holds clusters c1 (hosts h1, h2; seven VMs on h1, on ds1
// and pg1) and c2 (empty), datastore ds1 and port groups pg1 and pg2
// (unused); dc2 is empty.
func TestInUse(t *testing.T) {
	st := statetest.New(t)
	inv := &inventory.Inventory{St: st}
	dc1, dc2 := &api.Datacenter{Metadata: meta("dc1")}, &api.Datacenter{Metadata: meta("dc2")}
	in := api.Ref{ID: dc1.Metadata.ID}
	c1 := &api.Cluster{Metadata: meta("c1"), Spec: api.ClusterSpec{Datacenter: in}}
	c2 := &api.Cluster{Metadata: meta("c2"), Spec: api.ClusterSpec{Datacenter: in}}
	ds1 := &api.Datastore{Metadata: meta("ds1"), Spec: api.DatastoreSpec{Datacenter: in, Path: "/srv/ds1"}}
	pg1 := &api.PortGroup{Metadata: meta("pg1"), Spec: api.PortGroupSpec{Datacenter: in}}
	pg2 := &api.PortGroup{Metadata: meta("pg2"), Spec: api.PortGroupSpec{Datacenter: in}}
	h1 := &api.Host{Metadata: meta("h1"), Spec: api.HostSpec{Cluster: api.Ref{ID: c1.Metadata.ID}}}
	h2 := &api.Host{Metadata: meta("h2"), Spec: api.HostSpec{Cluster: api.Ref{ID: c1.Metadata.ID}}}
	objs := []api.Object{dc1, dc2, c1, c2, ds1, pg1, pg2, h1, h2}
	var vmNames []string
	for i := 0; i < 7; i++ {
		vm := &api.VM{Metadata: meta(fmt.Sprintf("vm%d", i)), Spec: api.VMSpec{
			Cluster: api.Ref{ID: c1.Metadata.ID}, Host: api.Ref{ID: h1.Metadata.ID},
			Disks: []api.VMDisk{{Name: "disk0", Datastore: api.Ref{ID: ds1.Metadata.ID}}},
			NICs:  []api.VMNIC{{PortGroup: api.Ref{ID: pg1.Metadata.ID}}}}}
		objs = append(objs, vm)
		vmNames = append(vmNames, vm.Metadata.Name)
	}
	ctx := context.Background()
	for _, o := range objs {
		if _, err := st.Store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}

	exact := map[api.Object]string{
		dc1: `cannot delete datacenter "dc1": it still has 2 clusters (c1, c2); 1 datastores (ds1); 2 portgroups (pg1, pg2)`,
		h2:  "", c2: "", pg2: "", dc2: "",
	}
	for o, want := range exact {
		err := inv.InUse(o)
		if want == "" {
			if err != nil {
				t.Errorf("%s is used by nothing, got %v", o.GetMeta().Name, err)
			}
			continue
		}
		if err == nil || err.Error() != want || !errors.Is(err, api.ErrConflict) {
			t.Errorf("delete %s: got %v, want the conflict %q", o.GetMeta().Name, err, want)
		}
	}
	// Seven VMs: five named (which five is the cache's order), then "and 2 more".
	vms := func(err error, prefix string) {
		t.Helper()
		if err == nil || !errors.Is(err, api.ErrConflict) {
			t.Fatalf("%s: got %v, want a conflict", prefix, err)
		}
		msg := err.Error()
		rest, ok := strings.CutPrefix(msg, prefix+"7 vms (")
		if !ok || !strings.HasSuffix(rest, " and 2 more)") {
			t.Fatalf("got %q, want %q7 vms (five names and 2 more)", msg, prefix)
		}
		names := strings.Split(strings.TrimSuffix(rest, " and 2 more)"), ", ")
		if len(names) != 5 {
			t.Fatalf("%q names %d VMs, want 5", msg, len(names))
		}
		for i, n := range names {
			if !slices.Contains(vmNames, n) || i > 0 && names[i-1] >= n {
				t.Errorf("%q: names not the VMs', or not sorted", msg)
			}
		}
	}
	vms(inv.InUse(c1), `cannot delete cluster "c1": it still has 2 hosts (h1, h2); `)
	vms(inv.InUse(ds1), `cannot delete datastore "ds1": it still has `)
	vms(inv.InUse(pg1), `cannot delete port group "pg1": it still has `)
	vms(inv.InUse(h1), `cannot delete host "h1": it still has `)
}
