package server_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
)

// switchHosts reads a switch's realization, by host name.
func switchHosts(t *testing.T, c *client.Client, name string) map[string]api.SwitchHost {
	t.Helper()
	sw, err := client.Get[*api.Switch](context.Background(), c, api.KindSwitch, name)
	if err != nil {
		t.Fatalf("read switch %s: %v", name, err)
	}
	out := map[string]api.SwitchHost{}
	for _, h := range sw.Status.Hosts {
		out[h.Host.Name] = h
	}
	return out
}

func allRealized(hs map[string]api.SwitchHost, n int) bool {
	if len(hs) != n {
		return false
	}
	for _, h := range hs {
		if h.State != api.RealizedOK {
			return false
		}
	}
	return true
}

func TestSwitchRealizedByEveryHostAndLaterJoiners(t *testing.T) {
	tunnel := map[string]string{"host-1": "192.0.2.1", "host-2": "192.0.2.2", "host-3": "192.0.2.3"}
	d := newDCWith(t, 2, func(cfg *agent.Config) { cfg.TunnelAddress = tunnel[cfg.Name] })
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindSwitch, api.SwitchCreateRequest{Name: "dvs1", Cluster: "cluster1"}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "web", Switch: "dvs1", VNI: 5001}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "lab", Switch: "dvs1", Isolated: true}))
	eventually(t, 20*time.Second, "both hosts realize dvs1", func() bool { return allRealized(switchHosts(t, d.c, "dvs1"), 2) })

	sw, err := client.Get[*api.Switch](ctx, d.c, api.KindSwitch, "dvs1")
	if err != nil || sw.Spec.Backend != api.BackendBridge || sw.Spec.MTU != 1500 || sw.Status.PortGroups != 2 || sw.Spec.Cluster.Name != "cluster1" {
		t.Fatalf("switch dvs1 = %+v, %v; want the bridge backend, MTU 1500, 2 port groups on cluster1", sw, err)
	}
	pg, err := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "web")
	if err != nil || pg.Status.Type != api.PortGroupVXLAN || pg.Spec.Switch.Name != "dvs1" {
		t.Fatalf("port group web = %+v, %v", pg, err)
	}

	// A host that joins later realizes the switch too, and the others'
	// flood lists gain it (their desired network changes, so they realize
	// a new version: pending until they do).
	d.startAgent("host-3")
	d.waitHosts(3)
	eventually(t, 20*time.Second, "all three hosts realize dvs1", func() bool { return allRealized(switchHosts(t, d.c, "dvs1"), 3) })
	h1, err := client.Get[*api.Host](ctx, d.c, api.KindHost, "host-1")
	if err != nil || h1.Status.TunnelAddress != "192.0.2.1" || h1.Status.NetworkGen == "" {
		t.Fatalf("host-1 = %+v, %v; want its tunnel address and a realized network", h1.Status, err)
	}

	// A VM on the port group: its NIC counts as a port, and neither the
	// port group nor the switch can go while it is there.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"),
		NICs: []api.NICRequest{{PortGroup: "web"}}, Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	d.run(d.c.Power(ctx, "web1", api.PowerRequest{Action: api.ActionStart}))
	if pg, _ := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "web"); pg.Status.Ports != 1 {
		t.Fatalf("port group web has %d ports, want 1", pg.Status.Ports)
	}
	if _, err := d.c.Delete(ctx, api.KindPortGroup, "web", nil); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "web1") {
		t.Fatalf("delete port group web while web1 uses it: %v; want a conflict naming web1", err)
	}
	if _, err := d.c.Delete(ctx, api.KindSwitch, "dvs1", nil); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "lab") {
		t.Fatalf("delete switch dvs1 with port groups: %v; want a conflict naming them", err)
	}
	d.run(d.c.Delete(ctx, api.KindPortGroup, "lab", nil))
	eventually(t, 20*time.Second, "hosts realize dvs1 without lab", func() bool { return allRealized(switchHosts(t, d.c, "dvs1"), 3) })
}

func TestNetworkBadInputChangesNothing(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindSwitch, api.SwitchCreateRequest{Name: "dvs1", Cluster: "cluster1"}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "web", Switch: "dvs1", VNI: 5001}))
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "v20", Switch: "dvs1", VLAN: 20}))
	zero := &api.TrafficShape{}
	cases := []struct {
		name string
		kind string
		req  any
		want error
		says string
	}{
		{"unknown switch", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "nope", VNI: 1}, api.ErrNotFound, "nope"},
		{"unknown cluster", api.KindSwitch, api.SwitchCreateRequest{Name: "x", Cluster: "nope"}, api.ErrNotFound, "nope"},
		{"VNI out of range", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: api.MaxVNI + 1}, api.ErrInvalid, "VNI"},
		{"duplicate VNI", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 5001}, api.ErrConflict, "web"},
		{"duplicate VLAN", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VLAN: 20}, api.ErrConflict, "v20"},
		{"VLAN out of range", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VLAN: 4095}, api.ErrInvalid, "VLAN"},
		{"two kinds", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 7, Isolated: true}, api.ErrInvalid, "exactly one"},
		{"no kind", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1"}, api.ErrInvalid, "exactly one"},
		{"VLAN without a switch", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", VLAN: 5}, api.ErrInvalid, "switch"},
		{"shaping rate 0", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 9, Shaping: &api.Shaping{In: zero}}, api.ErrInvalid, "average rate"},
		{"MTU below IPv6's", api.KindSwitch, api.SwitchCreateRequest{Name: "x", Cluster: "cluster1", MTU: 1200}, api.ErrInvalid, "1280"},
		{"unknown backend", api.KindSwitch, api.SwitchCreateRequest{Name: "x", Cluster: "cluster1", Backend: "nexus"}, api.ErrInvalid, "backend"},
		{"IPv6 prefix not /64", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 9,
			DHCP: &api.PortGroupDHCP{IPv6Prefix: "2001:db8::/48"}}, api.ErrInvalid, "/64"},
		{"IPv6 DNS without prefix", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 9,
			DHCP: &api.PortGroupDHCP{Subnet: "192.0.2.0/24", DNS: []string{"2001:db8::53"}}}, api.ErrInvalid, "no IPv6 prefix"},
		{"empty address service", api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 9,
			DHCP: &api.PortGroupDHCP{}}, api.ErrInvalid, "IPv6 prefix"},
		{"bad uplink", api.KindSwitch, api.SwitchCreateRequest{Name: "x", Cluster: "cluster1", Uplinks: []string{"eth0; reboot"}}, api.ErrInvalid, "uplink"},
	}
	before := func() int {
		return len(mustList[*api.Switch](t, d.c, api.KindSwitch)) + len(mustList[*api.PortGroup](t, d.c, api.KindPortGroup))
	}
	n := before()
	for _, c := range cases {
		_, err := d.c.Create(ctx, c.kind, c.req)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v; want %v saying %q", c.name, err, c.want, c.says)
		}
	}
	bad := 0
	if _, err := d.c.Update(ctx, api.KindPortGroup, "web", api.PortGroupUpdateRequest{VLAN: &bad}, 0); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("give a VXLAN port group a VLAN: %v", err)
	}
	mtu := 70000
	if _, err := d.c.Update(ctx, api.KindSwitch, "dvs1", api.SwitchUpdateRequest{MTU: &mtu}, 0); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("MTU 70000: %v", err)
	}
	if got := before(); got != n {
		t.Fatalf("bad requests changed the inventory: %d switches and port groups, had %d", got, n)
	}
	if pg, _ := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "web"); pg.Spec.VNI != 5001 || pg.Spec.VLAN != 0 {
		t.Fatalf("port group web changed: %+v", pg.Spec)
	}
	// A VM of another cluster cannot have a NIC on the switch's port groups.
	d.run(d.c.Create(ctx, api.KindCluster, api.ClusterCreateRequest{Name: "cluster2"}))
	_, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: "far", Cluster: "cluster2", CPUs: 1, Memory: api.MustSize("64MiB"), NICs: []api.NICRequest{{PortGroup: "web"}}})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "cluster2") {
		t.Fatalf("NIC on another cluster's switch: %v", err)
	}
	if slices.ContainsFunc(mustList[*api.VM](t, d.c, api.KindVM), func(v *api.VM) bool { return v.Metadata.Name == "far" }) {
		t.Fatal("the refused VM exists")
	}
}

func mustList[T api.Object](t *testing.T, c *client.Client, kind string) []T {
	t.Helper()
	l, err := client.List[T](context.Background(), c, kind, nil)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDHCPGivesEachNICAFixedAddress(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindSwitch, api.SwitchCreateRequest{Name: "dvs1", Cluster: "cluster1"}))
	for _, bad := range []api.PortGroupDHCP{{Subnet: "192.0.2.0/30"}, {Subnet: "2001:db8::/64"}, {Subnet: "192.0.2.0/24", Router: "198.51.100.1"},
		{Subnet: "192.0.2.0/24", ServerIP: "192.0.2.255"}, {Subnet: "192.0.2.0/24", DNS: []string{"dns.example"}}} {
		if _, err := d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "x", Switch: "dvs1", VNI: 9, DHCP: &bad}); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("DHCP %+v: %v; want it refused", bad, err)
		}
	}
	// A /29 has six host addresses: the server takes the last, the router
	// the first, four are left for NICs.
	d.run(d.c.Create(ctx, api.KindPortGroup, api.PortGroupCreateRequest{Name: "small", Switch: "dvs1", VNI: 10,
		DHCP: &api.PortGroupDHCP{Subnet: "192.0.2.8/29", Router: "192.0.2.9"}}))
	pg, _ := client.Get[*api.PortGroup](ctx, d.c, api.KindPortGroup, "small")
	if pg.Spec.DHCP.ServerIP != "192.0.2.14" {
		t.Fatalf("DHCP server address %q, want the subnet's last usable 192.0.2.14", pg.Spec.DHCP.ServerIP)
	}
	mk := func(name string) error {
		_, err := d.c.CreateVM(ctx, api.VMCreateRequest{Name: name, CPUs: 1, Memory: api.MustSize("64MiB"), NICs: []api.NICRequest{{PortGroup: "small"}}})
		return err
	}
	var got []string
	for _, name := range []string{"v1", "v2", "v3", "v4"} {
		if err := mk(name); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
		eventually(t, 10*time.Second, name+" created", func() bool { return d.vm(name).Status.Phase != api.PhaseCreating })
		got = append(got, d.vm(name).Spec.NICs[0].IPv4)
	}
	if want := []string{"192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.13"}; !slices.Equal(got, want) {
		t.Fatalf("addresses %v, want %v", got, want)
	}
	if err := mk("v5"); !errors.Is(err, api.ErrUnprocessable) || !strings.Contains(err.Error(), "no free address") {
		t.Fatalf("a fifth NIC on a full subnet: %v", err)
	}
	// A deleted VM's address is free again.
	d.run(d.c.Delete(ctx, api.KindVM, "v2", nil))
	if err := mk("v6"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "v6 created", func() bool { return d.vm("v6").Status.Phase != api.PhaseCreating })
	if ip := d.vm("v6").Spec.NICs[0].IPv4; ip != "192.0.2.11" {
		t.Fatalf("v6 got %s, want v2's freed 192.0.2.11", ip)
	}
}
