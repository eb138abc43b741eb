package placement_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/store"
)

// world is a cluster of two connected hosts, 2 CPUs and 1 GiB each, with
// no overcommit.
type world struct {
	st     *state.State
	p      *placement.Placer
	cl     *api.Cluster
	h1, h2 *api.Host
}

func newWorld(t *testing.T) *world {
	st := statetest.New(t)
	tally := state.NewTally()
	st.Cache.Observe(tally.Observe)
	ctx := context.Background()
	cl := &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "cluster1"}, Spec: api.ClusterSpec{CPUOvercommit: 1, MemoryOvercommit: 1}}
	host := func(name string) *api.Host {
		return &api.Host{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.HostSpec{Cluster: api.Ref{ID: cl.Metadata.ID}},
			Status: api.HostStatus{Connection: api.HostConnected, CPUs: 2, MemoryBytes: 1 << 30}}
	}
	w := &world{st: st, p: placement.New(st, tally), cl: cl, h1: host("h1"), h2: host("h2")}
	for _, o := range []api.Object{cl, w.h1, w.h2} {
		if _, err := st.Store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return w
}

func vm(name, mac string, cpus int) *api.VM {
	v := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.VMSpec{CPUs: cpus, MemoryBytes: 256 << 20}}
	if mac != "" {
		v.Spec.NICs = []api.VMNIC{{Name: "nic0", MAC: mac}}
	}
	return v
}

// Two new VMs with one MAC address: the second create fails, naming the
// address, and leaves nothing; the first VM's host is set and recorded.
func TestPlaceNewClaimsMACs(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	a, b := vm("a", "52:54:00:00:00:01", 1), vm("b", "52:54:00:00:00:01", 1)
	txnA, txnB := w.st.Store.Txn(), w.st.Store.Txn()
	relA, err := w.p.PlaceNew(txnA, a, w.cl, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer relA()
	relB, err := w.p.PlaceNew(txnB, b, w.cl, "", true)
	if err != nil {
		t.Fatal(err)
	}
	defer relB()
	if _, err := txnA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = txnB.Commit(ctx)
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "MAC address 52:54:00:00:00:01 is already in use") {
		t.Fatalf("second VM with the same MAC: %v", err)
	}
	got, err := state.Read[*api.VM](ctx, w.st, a.Metadata.ID)
	if err != nil || (got.Spec.Host.ID != w.h1.Metadata.ID && got.Spec.Host.ID != w.h2.Metadata.ID) {
		t.Fatalf("first VM: %v, host %q", err, got.Spec.Host.ID)
	}
	if _, err := state.Read[*api.VM](ctx, w.st, b.Metadata.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("second VM was recorded: %v", err)
	}
}

// Power-on reservations count until released: with each host's two CPUs
// taken by power-ons the cache does not show yet, a third finds no room;
// once one is released (its VM never recorded), it fits. A placement
// reserves allocation, which spreads VMs, not running capacity.
func TestReservationsHoldUntilReleased(t *testing.T) {
	w := newWorld(t)
	rel1, err := w.p.Admit(vm("a", "", 2), w.cl, w.h1, true)
	if err != nil {
		t.Fatal(err)
	}
	b := vm("b", "", 2)
	if _, err := w.p.Admit(b, w.cl, w.h2, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err = w.p.Place(vm("c", "", 2), w.cl, "", nil, true); !errors.Is(err, api.ErrUnprocessable) {
		t.Fatalf("a third 2-CPU VM on two full hosts: %v", err)
	}
	if _, err := w.p.Admit(vm("d", "", 1), w.cl, w.h2, false); err == nil || !strings.Contains(err.Error(), "host h2 has room for 0 vCPU") {
		t.Fatalf("power-on on full h2: %v", err)
	}
	if _, err := w.p.AdmitGrow(b, w.cl, w.h2, 1, 0, false); err == nil || !strings.Contains(err.Error(), "cannot hot-add to vm b") {
		t.Fatalf("hot-add on full h2: %v", err)
	}
	rel1()
	host, rel, err := w.p.Place(vm("c", "", 2), w.cl, "", nil, true)
	if err != nil || host != w.h1.Metadata.ID {
		t.Fatalf("after release: %v, on %s", err, host)
	}
	rel()
}
