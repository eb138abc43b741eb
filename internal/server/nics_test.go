package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
	"github.com/vdc-project/vdc/internal/netconf"
)

// nicDC is a datacenter of one sim host whose driver the test reads,
// with switch dvs1 (port groups web, with DHCP, and db) on cluster1, a
// switch of another cluster (port group far), and web1 running with its
// nic0 on the NAT port group vm-network.
type nicDC struct {
	*dc
	mu      sync.Mutex
	drivers map[string]*sim.Driver
	flaky   *flakyNICs
}

// flakyNICs is a sim driver whose NIC adds fail while fail is set, as
// QEMU's device_add can.
type flakyNICs struct {
	*sim.Driver
	fail atomic.Bool
}

func (f *flakyNICs) AddNIC(ctx context.Context, id string, n hypervisor.NICConfig) error {
	if f.fail.Load() {
		return errors.New("device_add: QEMU went away")
	}
	return f.Driver.AddNIC(ctx, id, n)
}

func newNICDC(t *testing.T) *nicDC {
	t.Helper()
	n := &nicDC{drivers: map[string]*sim.Driver{}}
	n.dc = newDCWith(t, 1, func(cfg *agent.Config) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.drivers[cfg.Name] = cfg.Driver.(*sim.Driver)
		n.flaky = &flakyNICs{Driver: n.drivers[cfg.Name]}
		cfg.Driver = n.flaky
	})
	ctx := context.Background()
	d := n.dc
	d.run(d.c.Create(ctx, api.KindCluster, api.ClusterCreateRequest{Name: "cluster2"}))
	d.run(d.c.Create(ctx, api.KindSwitch, api.SwitchCreateRequest{Name: "dvs1", Cluster: "cluster1"}))
	d.run(d.c.Create(ctx, api.KindSwitch, api.SwitchCreateRequest{Name: "dvs2", Cluster: "cluster2"}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "web", Switch: "dvs1", VNI: 5001,
		DHCP: &api.PortGroupDHCP{Subnet: "192.0.2.0/24"}}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "db", Switch: "dvs1", VNI: 5002}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "far", Switch: "dvs2", VNI: 5003}))
	eventually(t, 20*time.Second, "host-1 realizes dvs1", func() bool { return allRealized(switchHosts(t, d.c, "dvs1"), 1) })
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", Cluster: "cluster1", CPUs: 1, Memory: api.MustSize("64MiB"),
		NICs: []api.NICRequest{{PortGroup: "vm-network"}}, Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStart}))
	return n
}

// hostNICs are web1's NICs as its host's driver has them, by name.
func (n *nicDC) hostNICs(t *testing.T) map[string]hypervisor.NICConfig {
	t.Helper()
	n.mu.Lock()
	drv := n.drivers["host-1"]
	n.mu.Unlock()
	nics, err := drv.NICs(n.vm("web1").Metadata.ID)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]hypervisor.NICConfig{}
	for _, x := range nics {
		out[x.Name] = x
	}
	return out
}

func vmNIC(vm *api.VM, name string) (api.VMNIC, api.NICStatus) {
	var n api.VMNIC
	var st api.NICStatus
	for _, x := range vm.Spec.NICs {
		if x.Name == name {
			n = x
		}
	}
	for _, x := range vm.Status.NICs {
		if x.Name == name {
			st = x
		}
	}
	return n, st
}

// Through the API, a running VM gets a NIC on a switch's port group
// (hot-plugged into a slot, with an address of the port group's DHCP
// subnet and a tap the view names as the host does), the NIC moves live
// to another port group of the switch keeping its tap, its link goes
// down and up, and it is removed; a move between NAT and a switch waits
// for the VM to be off.
func TestNICLifecycleOnARunningVM(t *testing.T) {
	d := newNICDC(t)
	ctx := context.Background()
	d.run(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web"}))
	vm := d.vm("web1")
	n, st := vmNIC(vm, "nic1")
	wantTap := netconf.TapName(vm.Metadata.ID, 1)
	if n.PortGroup.Name != "web" || n.IPv4 != "192.0.2.1" || n.Slot != "hp0" || n.Model != "virtio" || st.Tap != wantTap {
		t.Fatalf("nic1 = %+v, status %+v; want it on web with 192.0.2.1, in hp0, tap %s", n, st, wantTap)
	}
	if _, st0 := vmNIC(vm, "nic0"); st0.Tap != "" {
		t.Fatalf("NAT nic0 has tap %q", st0.Tap)
	}
	if h := d.hostNICs(t)["nic1"]; h.Tap != wantTap || h.MAC != n.MAC || h.Slot != "hp0" || h.Switch == "" || h.IPv4 != n.IPv4 {
		t.Fatalf("the host has nic1 as %+v; want the tap %s the view names, its MAC, slot, switch and address", h, wantTap)
	}
	if pg, _ := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "web"); pg.Status.Ports != 1 {
		t.Fatalf("port group web has %d ports, want 1", pg.Status.Ports)
	}

	db := "db"
	d.run(d.c.UpdateNIC(ctx, "web1", "nic1", api.NICUpdateRequest{PortGroup: &db}))
	if n, st := vmNIC(d.vm("web1"), "nic1"); n.PortGroup.Name != "db" || n.IPv4 != "" || st.Tap != wantTap {
		t.Fatalf("nic1 after the move = %+v %+v; want it on db, no address (db has no DHCP), the same tap", n, st)
	}
	if h := d.hostNICs(t)["nic1"]; h.Tap != wantTap || h.PortGroup == n.PortGroup.ID {
		t.Fatalf("the host has nic1 as %+v after the move", h)
	}
	down := true
	d.run(d.c.UpdateNIC(ctx, "web1", "nic1", api.NICUpdateRequest{LinkDown: &down}))
	if n, _ := vmNIC(d.vm("web1"), "nic1"); !n.LinkDown || !d.hostNICs(t)["nic1"].LinkDown {
		t.Fatalf("nic1 after link down: %+v, host %+v", n, d.hostNICs(t)["nic1"])
	}

	web := "web"
	_, err := d.c.UpdateNIC(ctx, "web1", "nic0", api.NICUpdateRequest{PortGroup: &web})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "only while the VM is off") {
		t.Fatalf("move running nic0 from NAT to web: %v; want a conflict saying to stop the VM", err)
	}

	d.run(d.c.RemoveNIC(ctx, "web1", "nic1"))
	if n, _ := vmNIC(d.vm("web1"), "nic1"); n.Name != "" {
		t.Fatalf("nic1 still there after its removal: %+v", n)
	}
	if _, ok := d.hostNICs(t)["nic1"]; ok {
		t.Fatal("the host still has nic1")
	}

	d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStop, Force: true}))
	d.run(d.c.UpdateNIC(ctx, "web1", "nic0", api.NICUpdateRequest{PortGroup: &web}))
	n0, st0 := vmNIC(d.vm("web1"), "nic0")
	if n0.PortGroup.Name != "web" || n0.IPv4 != "192.0.2.1" || st0.Tap != netconf.TapName(vm.Metadata.ID, 0) {
		t.Fatalf("nic0 moved to web while off: %+v %+v; want web's freed first address and a tap", n0, st0)
	}
	d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStart}))
	if h := d.hostNICs(t)["nic0"]; h.Tap != st0.Tap {
		t.Fatalf("after the start the host has nic0 as %+v", h)
	}
}

// Bad NIC requests get the right status and a message that says why, and
// change nothing: not the VM, not its host, no task.
func TestNICBadInputChangesNothing(t *testing.T) {
	d := newNICDC(t)
	ctx := context.Background()
	mac := d.vm("web1").Spec.NICs[0].MAC
	tasks := func() int {
		l, err := d.c.ListTasks(ctx, clientTaskQuery())
		if err != nil {
			t.Fatal(err)
		}
		return len(l)
	}
	before, beforeHost, beforeTasks := d.vm("web1").Spec.NICs, d.hostNICs(t), tasks()
	str := func(s string) *string { return &s }
	raw := func(method, path, body string) error {
		return d.c.Do(ctx, client.Request{Method: method, Path: path, Body: json.RawMessage(body)}, nil)
	}
	cases := []struct {
		name string
		err  error
		want error
		says string
	}{
		{"unknown VM", second(d.c.AddNIC(ctx, "nope", api.NICAddRequest{PortGroup: "web"})), api.ErrNotFound, "nope"},
		{"unknown port group", second(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "dmz"})), api.ErrNotFound, "dmz"},
		{"another cluster's switch", second(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "far"})), api.ErrInvalid, "dvs2"},
		{"duplicate MAC", second(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web", MAC: mac})), api.ErrConflict, mac},
		{"bad MAC", second(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web", MAC: "zz:54:00:00:00:01"})), api.ErrInvalid, "MAC"},
		{"bad model", second(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web", Model: "vmxnet3"})), api.ErrInvalid, "vmxnet3"},
		{"unknown field", raw(http.MethodPost, "/vms/web1/nics", `{"portGroup":"web","vlan":5}`), api.ErrInvalid, "vlan"},
		{"port group of the wrong type", raw(http.MethodPost, "/vms/web1/nics", `{"portGroup":5}`), api.ErrInvalid, "portGroup"},
		{"unknown NIC (remove)", second(d.c.RemoveNIC(ctx, "web1", "nic5")), api.ErrNotFound, "nic5"},
		{"unknown NIC (update)", second(d.c.UpdateNIC(ctx, "web1", "nic5", api.NICUpdateRequest{PortGroup: str("db")})), api.ErrNotFound, "nic5"},
		{"nothing to change", second(d.c.UpdateNIC(ctx, "web1", "nic0", api.NICUpdateRequest{})), api.ErrInvalid, "nothing to change"},
		{"NAT to a switch while running", second(d.c.UpdateNIC(ctx, "web1", "nic0", api.NICUpdateRequest{PortGroup: str("db")})), api.ErrConflict, "only while the VM is off"},
	}
	for _, c := range cases {
		if !errors.Is(c.err, c.want) || !strings.Contains(c.err.Error(), c.says) {
			t.Errorf("%s: %v; want %v saying %q", c.name, c.err, c.want, c.says)
		}
	}
	after := d.vm("web1").Spec.NICs
	if fmt.Sprint(after) != fmt.Sprint(before) || fmt.Sprint(d.hostNICs(t)) != fmt.Sprint(beforeHost) || tasks() != beforeTasks {
		t.Fatalf("bad requests changed something: NICs %+v (were %+v), host %+v (was %+v), %d tasks (were %d)",
			after, before, d.hostNICs(t), beforeHost, tasks(), beforeTasks)
	}

	// At the limit: the VM has api.MaxNICsPerVM NICs (the running VM's
	// fourth hot-plug takes the last slot, so it is off for this).
	d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStop, Force: true}))
	for i := 1; i < api.MaxNICsPerVM; i++ {
		d.run(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "db"}))
	}
	if _, err := d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "db"}); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "most it may have") {
		t.Fatalf("a NIC past the limit: %v", err)
	}
	if n := len(d.vm("web1").Spec.NICs); n != api.MaxNICsPerVM || len(d.hostNICs(t)) != n {
		t.Fatalf("web1 has %d NICs (its host %d), want %d", n, len(d.hostNICs(t)), api.MaxNICsPerVM)
	}
}

func second(_ *api.Task, err error) error { return err }

// A NIC add that fails on the host leaves nothing: not in the VM, not on
// the host (its config is as before: the same name is free again), and
// its address and MAC are free for the next add.
func TestNICAddFailedOnTheHostLeavesNothing(t *testing.T) {
	d := newNICDC(t)
	ctx := context.Background()
	d.flaky.fail.Store(true)
	tk, err := d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web", MAC: "52:54:00:aa:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.Wait(ctx, tk); err == nil || !strings.Contains(err.Error(), "QEMU went away") || !strings.Contains(err.Error(), "nic1") {
		t.Fatalf("an add QEMU fails: %v; want the task failed, naming nic1 and why", err)
	}
	if n, _ := vmNIC(d.vm("web1"), "nic1"); n.Name != "" {
		t.Fatalf("the failed nic1 was recorded: %+v", n)
	}
	if _, ok := d.hostNICs(t)["nic1"]; ok {
		t.Fatal("the host has the failed nic1")
	}
	d.flaky.fail.Store(false)
	d.run(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web"}))
	n, _ := vmNIC(d.vm("web1"), "nic1")
	if n.IPv4 != "192.0.2.1" {
		t.Fatalf("the next add: %+v; want nic1 with the address the failed one had", n)
	}
	if h, ok := d.hostNICs(t)["nic1"]; !ok || h.MAC != n.MAC || h.Slot == "" {
		t.Fatalf("after the next add the host has nic1 as %+v (%v), want MAC %s", h, ok, n.MAC)
	}
	d.run(d.c.AddNIC(ctx, "web1", api.NICAddRequest{PortGroup: "web", MAC: "52:54:00:aa:00:01"}))
	if n, _ := vmNIC(d.vm("web1"), "nic2"); n.MAC != "52:54:00:aa:00:01" {
		t.Fatalf("an add with the failed one's MAC: %+v", n)
	}
}
