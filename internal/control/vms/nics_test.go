package vms_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/store"
)

// nicWorld is the world with switches and port groups: dvs1 (bridge) and
// ovs1 (ovs) on cluster1; web (VXLAN 5001, DHCP 192.0.2.0/24) and db
// (VXLAN 5002, DHCP 198.51.100.0/24) on dvs1, lab on ovs1; far on a
// switch of another cluster; elsewhere in another datacenter. The
// world's pg1 is NAT. It also has a running VM, web1, with nic0 on pg1.
type nicWorld struct {
	*world
	vm *api.VM
}

func newNICWorld(t *testing.T) *nicWorld {
	t.Helper()
	w := newWorld(t)
	w.answerPower()
	// Made before the other port groups: its one NIC goes on pg1, the
	// datacenter's only one then.
	req := createReq("web1", 1)
	req.PowerOn = true
	vm := w.create(t, req)
	ctx := context.Background()
	cl, _ := state.Lookup[*api.Cluster](w.st, "cluster1")
	dc := cl.Spec.Datacenter
	cl2 := &api.Cluster{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "cluster2"}, Spec: api.ClusterSpec{Datacenter: dc, CPUOvercommit: 1, MemoryOvercommit: 1}}
	dc2 := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc2"}}
	sw := func(name, backend string, cl *api.Cluster) *api.Switch {
		return &api.Switch{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name},
			Spec: api.SwitchSpec{Datacenter: dc, Cluster: api.Ref{ID: cl.Metadata.ID}, Backend: backend, MTU: 1500}}
	}
	dvs1, ovs1, dvs2 := sw("dvs1", api.BackendBridge, cl), sw("ovs1", api.BackendOVS, cl), sw("dvs2", api.BackendBridge, cl2)
	pg := func(name string, s *api.Switch, vni int, subnet string) *api.PortGroup {
		p := &api.PortGroup{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}, Spec: api.PortGroupSpec{Datacenter: dc, VNI: vni}}
		if s != nil {
			p.Spec.Switch = api.Ref{ID: s.Metadata.ID}
		}
		if subnet != "" {
			p.Spec.DHCP = &api.PortGroupDHCP{Subnet: subnet + "/24", ServerIP: strings.TrimSuffix(subnet, "0") + "254"}
		}
		return p
	}
	elsewhere := pg("elsewhere", nil, 0, "")
	elsewhere.Spec.Datacenter = api.Ref{ID: dc2.Metadata.ID}
	for _, o := range []api.Object{cl2, dc2, dvs1, ovs1, dvs2, pg("web", dvs1, 5001, "192.0.2.0"), pg("db", dvs1, 5002, "198.51.100.0"),
		pg("lab", ovs1, 5003, ""), pg("far", dvs2, 5004, ""), elsewhere} {
		if _, err := w.st.Store.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	return &nicWorld{world: w, vm: vm}
}

// cur is web1 as the store has it now.
func (w *nicWorld) cur(t *testing.T) *api.VM {
	t.Helper()
	if err := w.st.Cache.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w.world.vm(t, w.vm.Metadata.ID)
}

// run submits a NIC change and waits for its task.
func (w *nicWorld) run(t *testing.T, what string, submit func(*api.VM) (*api.Task, error)) *api.Task {
	t.Helper()
	tk, err := submit(w.cur(t))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return w.wait(t, tk)
}

func (w *nicWorld) succeed(t *testing.T, what string, submit func(*api.VM) (*api.Task, error)) {
	t.Helper()
	if tk := w.run(t, what, submit); tk.State != api.TaskSucceeded {
		t.Fatalf("%s: %s: %v", what, tk.State, tk.Error)
	}
}

func (w *nicWorld) add(pg string) func(*api.VM) (*api.Task, error) {
	return func(vm *api.VM) (*api.Task, error) {
		return w.svc.AddNIC(context.Background(), vm, api.NICAddRequest{PortGroup: pg})
	}
}

// held says whether the store holds a claim key (a MAC's, an address's).
func (w *nicWorld) held(t *testing.T, key string) bool {
	t.Helper()
	resp, err := w.st.Store.Client().Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count > 0
}

func nicNamed(vm *api.VM, name string) *api.VMNIC {
	for i := range vm.Spec.NICs {
		if vm.Spec.NICs[i].Name == name {
			return &vm.Spec.NICs[i]
		}
	}
	return nil
}

func pgID(t *testing.T, w *world, name string) string {
	t.Helper()
	pg, ok := state.Lookup[*api.PortGroup](w.st, name)
	if !ok {
		t.Fatalf("no port group %s", name)
	}
	return pg.Metadata.ID
}

// A NIC added to a running VM gets the next name, a MAC, the lowest free
// address of its port group's subnet and a hot-plug slot; the host is
// asked to plug it in with its switch, and the MAC and address are
// claimed in the store. A second one gets the next of each.
func TestNICAddToARunningVM(t *testing.T) {
	w := newNICWorld(t)
	w.succeed(t, "add a NIC on web", w.add("web"))
	w.succeed(t, "add a second NIC on web", w.add("web"))
	vm := w.cur(t)
	h, _ := state.Get[*api.Host](w.st, vm.Spec.Host.ID)
	var got []string
	for _, c := range w.hosts.Calls() {
		if c.Method == "AddNIC" {
			n := c.Args[1].(hypervisor.NICConfig)
			if c.Host != h.Metadata.Name || n.Switch == "" || n.PortGroup != pgID(t, w.world, "web") || n.Model != "virtio" {
				t.Errorf("AddNIC call %+v", c)
			}
			got = append(got, fmt.Sprintf("%s %s %s", n.Name, n.Slot, n.IPv4))
		}
	}
	if want := "nic1 hp0 192.0.2.1,nic2 hp1 192.0.2.2"; strings.Join(got, ",") != want {
		t.Fatalf("NICs plugged: %v, want %s", got, want)
	}
	for _, name := range []string{"nic1", "nic2"} {
		n := nicNamed(vm, name)
		if n == nil || n.MAC == "" || n.Slot == "" {
			t.Fatalf("vm web1 NICs %+v: want %s recorded with its MAC and slot", vm.Spec.NICs, name)
		}
		if !w.held(t, placement.MACKey(n.MAC)) || !w.held(t, placement.IPKey(n.PortGroup.ID, n.IPv4)) {
			t.Errorf("%s: its MAC %s and address %s are not claimed", name, n.MAC, n.IPv4)
		}
	}
}

// A NIC added to a VM that is off gets no slot (it starts in a root port
// of its own).
func TestNICAddToAVMThatIsOff(t *testing.T) {
	w := newNICWorld(t)
	w.succeed(t, "stop web1", func(vm *api.VM) (*api.Task, error) {
		return w.sub.Submit(context.Background(), w.st.Store.Txn(), tasks.New(context.Background(), api.OpVMPower(api.ActionStop), vm, api.PowerRequest{Action: api.ActionStop, Force: true}))
	})
	w.succeed(t, "add a NIC on lab", func(vm *api.VM) (*api.Task, error) {
		return w.svc.AddNIC(context.Background(), vm, api.NICAddRequest{PortGroup: "lab", Model: "e1000", MAC: "52:54:00:AA:BB:CC"})
	})
	n := nicNamed(w.cur(t), "nic1")
	if n == nil || n.Slot != "" || n.MAC != "52:54:00:aa:bb:cc" || n.Model != "e1000" || n.IPv4 != "" {
		t.Fatalf("nic1 of a VM that is off: %+v; want no slot, the MAC given (lower case), e1000, no address", n)
	}
}

// When the host fails to add the NIC, the task fails, the host is asked
// to take out what it may have added, nothing is recorded, and the MAC
// and address are free again (the next NIC gets the same address).
func TestNICAddFailureUndoes(t *testing.T) {
	w := newNICWorld(t)
	var mu sync.Mutex
	fail := true
	w.hosts.On["AddNIC"] = func(hoststest.Call) ([]any, error) {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return nil, errors.New("device_add: connection reset by peer")
		}
		return nil, nil
	}
	tk := w.run(t, "add a NIC on web", w.add("web"))
	if tk.State != api.TaskFailed || !strings.Contains(tk.Error.Message, "connection reset") || !strings.Contains(tk.Error.Message, "nic1") {
		t.Fatalf("add that the host fails: %s %v; want failed, naming nic1 and the host's error", tk.State, tk.Error)
	}
	var p struct {
		NIC api.VMNIC `json:"nic"`
	}
	if err := (&tasks.Run{Task: tk}).Params(&p); err != nil {
		t.Fatal(err)
	}
	if len(w.cur(t).Spec.NICs) != 1 {
		t.Fatalf("NICs after a failed add: %+v", w.cur(t).Spec.NICs)
	}
	if w.held(t, placement.MACKey(p.NIC.MAC)) || w.held(t, placement.IPKey(p.NIC.PortGroup.ID, p.NIC.IPv4)) {
		t.Fatalf("the failed add still holds MAC %s or address %s", p.NIC.MAC, p.NIC.IPv4)
	}
	if m := strings.Join(w.hosts.Methods(), ","); !strings.HasSuffix(m, "AddNIC,RemoveNIC") {
		t.Fatalf("host calls %s: want the add undone with RemoveNIC", m)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	w.succeed(t, "add a NIC on web again", w.add("web"))
	if n := nicNamed(w.cur(t), "nic1"); n == nil || n.IPv4 != p.NIC.IPv4 || n.Slot != p.NIC.Slot {
		t.Fatalf("the next NIC %+v: want nic1 with the address and slot the failed one had back (%s, %s)", n, p.NIC.IPv4, p.NIC.Slot)
	}
}

// Adds queued before the first has run each get their own name, slot,
// MAC and address: the first's claims are seen by the second.
func TestNICAddsInFlightGetTheirOwnNamesSlotsAndAddresses(t *testing.T) {
	w := newNICWorld(t)
	release := make(chan struct{})
	w.hosts.On["AddNIC"] = func(hoststest.Call) ([]any, error) { <-release; return nil, nil }
	ctx := context.Background()
	var tks []*api.Task
	for i := 0; i < 3; i++ {
		tk, err := w.svc.AddNIC(ctx, w.cur(t), api.NICAddRequest{PortGroup: "web"})
		if err != nil {
			t.Fatalf("add %d: %v", i, err)
		}
		tks = append(tks, tk)
	}
	close(release)
	for _, tk := range tks {
		if tk = w.wait(t, tk); tk.State != api.TaskSucceeded {
			t.Fatalf("%s: %v", tk.State, tk.Error)
		}
	}
	seen := map[string]bool{}
	for _, n := range w.cur(t).Spec.NICs[1:] {
		for _, v := range []string{n.Name, n.Slot, n.MAC, n.IPv4} {
			if seen[v] {
				t.Fatalf("two NICs share %s: %+v", v, w.cur(t).Spec.NICs)
			}
			seen[v] = true
		}
	}
	if len(seen) != 12 {
		t.Fatalf("NICs %+v", w.cur(t).Spec.NICs)
	}
}

// Bad requests are refused with the right class and a message that says
// why, and change nothing: no host call, no task, no NIC.
func TestNICRequestsRefusedChangeNothing(t *testing.T) {
	w := newNICWorld(t)
	ctx := context.Background()
	mac := w.cur(t).Spec.NICs[0].MAC
	before := len(w.hosts.Calls())
	tasksBefore := len(state.List(w.st, func(*api.Task) bool { return true }))
	add := func(req api.NICAddRequest) error { _, err := w.svc.AddNIC(ctx, w.cur(t), req); return err }
	upd := func(nic string, req api.NICUpdateRequest) error {
		_, err := w.svc.UpdateNIC(ctx, w.cur(t), nic, req)
		return err
	}
	pgs := func(s string) *string { return &s }
	down := true
	cases := []struct {
		name string
		err  error
		want error
		says string
	}{
		{"unknown port group", add(api.NICAddRequest{PortGroup: "nope"}), api.ErrNotFound, "nope"},
		{"another cluster's switch", add(api.NICAddRequest{PortGroup: "far"}), api.ErrInvalid, "dvs2"},
		{"another datacenter", add(api.NICAddRequest{PortGroup: "elsewhere"}), api.ErrInvalid, "another datacenter"},
		{"duplicate MAC", add(api.NICAddRequest{PortGroup: "web", MAC: strings.ToUpper(mac)}), api.ErrConflict, "already in use"},
		{"bad MAC", add(api.NICAddRequest{PortGroup: "web", MAC: "52:54:00"}), api.ErrInvalid, "MAC"},
		{"multicast MAC", add(api.NICAddRequest{PortGroup: "web", MAC: "01:00:5e:00:00:01"}), api.ErrInvalid, "multicast"},
		{"bad model", add(api.NICAddRequest{PortGroup: "web", Model: "ne2000"}), api.ErrInvalid, "ne2000"},
		{"no port group", add(api.NICAddRequest{}), api.ErrInvalid, "port group"},
		{"unknown NIC (update)", upd("nic7", api.NICUpdateRequest{LinkDown: &down}), api.ErrNotFound, "nic7"},
		{"nothing to change", upd("nic0", api.NICUpdateRequest{}), api.ErrInvalid, "nothing to change"},
		{"already so", upd("nic0", api.NICUpdateRequest{PortGroup: pgs("pg1")}), api.ErrConflict, "already on port group pg1"},
		{"NAT to switch while running", upd("nic0", api.NICUpdateRequest{PortGroup: pgs("web")}), api.ErrConflict, "only while the VM is off"},
		{"update to an unknown port group", upd("nic0", api.NICUpdateRequest{PortGroup: pgs("nope")}), api.ErrNotFound, "nope"},
	}
	_, err := w.svc.RemoveNIC(ctx, w.cur(t), "nic9")
	cases = append(cases, struct {
		name string
		err  error
		want error
		says string
	}{"unknown NIC (remove)", err, api.ErrNotFound, "nic9"})
	for _, c := range cases {
		if !errors.Is(c.err, c.want) || !strings.Contains(c.err.Error(), c.says) {
			t.Errorf("%s: %v; want %v saying %q", c.name, c.err, c.want, c.says)
		}
	}
	if n := len(w.hosts.Calls()); n != before {
		t.Errorf("refused requests called the host: %v", w.hosts.Methods()[before:])
	}
	if n := len(state.List(w.st, func(*api.Task) bool { return true })); n != tasksBefore {
		t.Errorf("refused requests queued %d tasks", n-tasksBefore)
	}
	if nics := w.cur(t).Spec.NICs; len(nics) != 1 || nics[0].LinkDown {
		t.Errorf("refused requests changed the NICs: %+v", nics)
	}
}

// A VM with the most NICs takes no more, counting those being added; a
// migrating VM and a template take no NIC changes.
func TestNICAddRefusedAtTheLimitAndInTheWrongState(t *testing.T) {
	w := newNICWorld(t)
	ctx := context.Background()
	release := make(chan struct{})
	w.hosts.On["AddNIC"] = func(hoststest.Call) ([]any, error) { <-release; return nil, nil }
	if err := state.Update(ctx, w.st, nil, w.vm.Metadata.ID, func(v *api.VM) error {
		for i := 1; i < api.MaxNICsPerVM-1; i++ {
			v.Spec.NICs = append(v.Spec.NICs, api.VMNIC{Name: fmt.Sprintf("nic%d", i), PortGroup: v.Spec.NICs[0].PortGroup, MAC: fmt.Sprintf("52:54:00:00:01:%02x", i), Model: "virtio"})
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	last, err := w.svc.AddNIC(ctx, w.cur(t), api.NICAddRequest{PortGroup: "pg1"})
	if err != nil {
		t.Fatalf("add the 16th NIC: %v", err)
	}
	if _, err := w.svc.AddNIC(ctx, w.cur(t), api.NICAddRequest{PortGroup: "pg1"}); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "most it may have") {
		t.Fatalf("add a 17th NIC while the 16th is being added: %v", err)
	}
	close(release)
	if tk := w.wait(t, last); tk.State != api.TaskSucceeded {
		t.Fatal(tk.Error)
	}

	mig := tasks.New(ctx, api.OpVMMigrate, w.cur(t), nil)
	mig.State = api.TaskRunning // no handler here: it stays unfinished
	if _, err := w.st.Store.Create(ctx, mig); err != nil {
		t.Fatal(err)
	}
	w.st.Cache.Sync(ctx)
	if _, err := w.svc.RemoveNIC(ctx, w.cur(t), "nic1"); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "being migrated") {
		t.Fatalf("remove a NIC of a migrating VM: %v", err)
	}
	if err := state.Update(ctx, w.st, nil, w.vm.Metadata.ID, func(v *api.VM) error { v.Spec.Template = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := w.svc.RemoveNIC(ctx, w.cur(t), "nic1"); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "template") {
		t.Fatalf("remove a NIC of a template: %v", err)
	}
}

// A removed NIC leaves the VM with its MAC and address, and its name is
// the next one given.
func TestNICRemoveReleasesItsClaims(t *testing.T) {
	w := newNICWorld(t)
	w.succeed(t, "add nic1 on web", w.add("web"))
	w.succeed(t, "add nic2 on web", w.add("web"))
	n1 := *nicNamed(w.cur(t), "nic1")
	w.succeed(t, "remove nic1", func(vm *api.VM) (*api.Task, error) { return w.svc.RemoveNIC(context.Background(), vm, "nic1") })
	if m := w.hosts.Methods(); m[len(m)-1] != "RemoveNIC" {
		t.Fatalf("host calls %v", m)
	}
	if nicNamed(w.cur(t), "nic1") != nil || nicNamed(w.cur(t), "nic2") == nil {
		t.Fatalf("NICs after removing nic1: %+v", w.cur(t).Spec.NICs)
	}
	if w.held(t, placement.MACKey(n1.MAC)) || w.held(t, placement.IPKey(n1.PortGroup.ID, n1.IPv4)) {
		t.Fatalf("removed nic1 still holds MAC %s or address %s", n1.MAC, n1.IPv4)
	}
	w.succeed(t, "add another NIC", w.add("db"))
	if n := nicNamed(w.cur(t), "nic1"); n == nil || n.IPv4 != "198.51.100.1" || n.Slot != n1.Slot {
		t.Fatalf("the next NIC %+v: want nic1 again, in the slot it freed, with db's first address", n)
	}
	// A failed removal leaves the NIC.
	w.hosts.On["RemoveNIC"] = func(hoststest.Call) ([]any, error) {
		return nil, api.Errorf(api.ErrConflict, "the guest did not release the NIC within 1m0s")
	}
	tk := w.run(t, "remove nic2", func(vm *api.VM) (*api.Task, error) { return w.svc.RemoveNIC(context.Background(), vm, "nic2") })
	if tk.State != api.TaskFailed || !strings.Contains(tk.Error.Message, "did not release") || nicNamed(w.cur(t), "nic2") == nil {
		t.Fatalf("removal the guest refuses: %s %v, NICs %+v", tk.State, tk.Error, w.cur(t).Spec.NICs)
	}
}

// A running VM's NIC moves live between port groups of one switch: the
// host gets the NIC on its new port group with an address there, the old
// address is let go. Link state changes live. Between NAT and a switch,
// and between switches of different backends, only while off.
func TestNICUpdateMovesAndLinks(t *testing.T) {
	w := newNICWorld(t)
	ctx := context.Background()
	w.succeed(t, "add nic1 on web", w.add("web"))
	old := *nicNamed(w.cur(t), "nic1")
	to := func(pg string) api.NICUpdateRequest { return api.NICUpdateRequest{PortGroup: &pg} }
	w.succeed(t, "move nic1 to db", func(vm *api.VM) (*api.Task, error) { return w.svc.UpdateNIC(ctx, vm, "nic1", to("db")) })
	calls := w.hosts.Calls()
	last := calls[len(calls)-1]
	if n := last.Args[1].(hypervisor.NICConfig); last.Method != "UpdateNIC" || n.PortGroup != pgID(t, w.world, "db") || n.IPv4 != "198.51.100.1" || n.MAC != old.MAC || n.Slot != old.Slot {
		t.Fatalf("last host call %+v", last)
	}
	n := nicNamed(w.cur(t), "nic1")
	if n.PortGroup.ID != pgID(t, w.world, "db") || n.IPv4 != "198.51.100.1" {
		t.Fatalf("nic1 after the move: %+v", n)
	}
	if w.held(t, placement.IPKey(old.PortGroup.ID, old.IPv4)) || !w.held(t, placement.IPKey(n.PortGroup.ID, n.IPv4)) {
		t.Fatal("the move did not hand the NIC's address over from web to db")
	}
	if _, err := w.svc.UpdateNIC(ctx, w.cur(t), "nic1", to("lab")); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "ovs") {
		t.Fatalf("move a running NIC from a bridge switch to an ovs one: %v", err)
	}
	down := true
	w.succeed(t, "set nic1's link down", func(vm *api.VM) (*api.Task, error) {
		return w.svc.UpdateNIC(ctx, vm, "nic1", api.NICUpdateRequest{LinkDown: &down})
	})
	if n := nicNamed(w.cur(t), "nic1"); !n.LinkDown {
		t.Fatalf("nic1 after link down: %+v", n)
	}
	if _, err := w.svc.UpdateNIC(ctx, w.cur(t), "nic1", api.NICUpdateRequest{LinkDown: &down}); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "already with its link down") {
		t.Fatalf("link down twice: %v", err)
	}

	// A move the host fails: nothing changes, the new address is free.
	w.hosts.On["UpdateNIC"] = func(hoststest.Call) ([]any, error) {
		return nil, api.Errorf(api.ErrConflict, "plug nic1 of vm web1 into port group web: not realized")
	}
	tk := w.run(t, "move nic1 back to web", func(vm *api.VM) (*api.Task, error) { return w.svc.UpdateNIC(ctx, vm, "nic1", to("web")) })
	if tk.State != api.TaskFailed || !strings.Contains(tk.Error.Message, "not realized") {
		t.Fatalf("a move the host fails: %s %v", tk.State, tk.Error)
	}
	if n := nicNamed(w.cur(t), "nic1"); n.PortGroup.ID != pgID(t, w.world, "db") || w.held(t, placement.IPKey(pgID(t, w.world, "web"), "192.0.2.1")) {
		t.Fatalf("after a failed move: nic1 %+v, web's address held: %v", n, w.held(t, placement.IPKey(pgID(t, w.world, "web"), "192.0.2.1")))
	}
	delete(w.hosts.On, "UpdateNIC")

	// Off, a NIC moves between NAT and a switch.
	w.succeed(t, "stop web1", func(vm *api.VM) (*api.Task, error) {
		return w.sub.Submit(ctx, w.st.Store.Txn(), tasks.New(ctx, api.OpVMPower(api.ActionStop), vm, api.PowerRequest{Action: api.ActionStop, Force: true}))
	})
	w.succeed(t, "move nic0 from NAT to web while off", func(vm *api.VM) (*api.Task, error) { return w.svc.UpdateNIC(ctx, vm, "nic0", to("web")) })
	if n := nicNamed(w.cur(t), "nic0"); n.PortGroup.ID != pgID(t, w.world, "web") || n.IPv4 != "192.0.2.1" {
		t.Fatalf("nic0 after moving to web: %+v", n)
	}
}
