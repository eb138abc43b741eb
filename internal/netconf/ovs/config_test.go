package ovs_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/netconf/ovs"
)

// ovsConfig is everything the backend configures in its OVS, as text:
// the database records' configuration (what vswitchd writes there
// itself, statistics and status, left out), each bridge's flows, meters, port flags and static MACs.
func ovsConfig(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, tc := range [][2]string{
		{"Bridge", "_uuid,name,ports,datapath_type,fail_mode,external_ids,other_config"},
		{"Port", "_uuid,name,interfaces,tag,trunks,vlan_mode,bond_mode,qos,external_ids,other_config"},
		{"Interface", "_uuid,name,type,options,external_ids,mtu_request"},
		{"QoS", "_uuid,type,queues,other_config,external_ids"},
		{"Queue", "_uuid,other_config,external_ids"},
	} {
		b.WriteString(vsctl(t, dir, "--format=csv", "--columns="+tc[1], "list", tc[0]))
	}
	for _, br := range strings.Fields(vsctl(t, dir, "list-br")) {
		b.WriteString(ovsTool(t, dir, "ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", br))
		b.WriteString(ovsTool(t, dir, "ovs-ofctl", "-O", "OpenFlow13", "dump-meters", br))
		for _, line := range strings.Split(ovsTool(t, dir, "ovs-ofctl", "show", br), "\n") {
			if strings.Contains(line, "config:") || strings.Contains(line, "(") {
				b.WriteString(line + "\n")
			}
		}
		for _, line := range strings.Split(ovsTool(t, dir, "ovs-appctl", "-t", dir+"/ovs-vswitchd.ctl", "fdb/show", br), "\n") {
			if strings.HasSuffix(line, "static") {
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

func richState(h *netconftest.Host, peer netip.Addr) netconf.Host {
	strict := netconftest.VXLANGroup("pg-web", 100, peer)
	shaped := netconftest.IsolatedGroup("pg-iso")
	shaped.Policy = netconf.Policy{AllowForgedTransmits: true, In: netconf.Shape{AverageBitsPerSec: 50e6}, Out: netconf.Shape{AverageBitsPerSec: 30e6}}
	vlan := netconftest.VLANGroup("pg-v10", 10)
	sw := netconftest.SwitchOn(h, "sw1", strict, shaped, vlan)
	return netconf.Host{Switches: []netconf.Switch{sw}, Ports: []netconf.Port{
		netconftest.NIC("vm-a", 0, "pg-web"), netconftest.NIC("vm-a", 1, "pg-iso"), netconftest.NIC("vm-b", 0, "pg-iso"), netconftest.NIC("vm-b", 1, "pg-v10"),
	}}
}

// A second Converge, and one by a restarted agent, writes nothing to
// OVS: no record, flow, meter, flag or MAC entry changes.
func TestConvergeWritesNothingTwice(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 2})
	h0 := lab.Hosts[0]
	b := newOVS(t, h0.NS)
	want := richState(h0, lab.Hosts[1].IPv4)
	netconftest.ConvergeClean(t, b, want)
	first := ovsConfig(t, b.Dir())
	netconftest.ConvergeClean(t, b, want)
	if again := ovsConfig(t, b.Dir()); again != first {
		t.Errorf("a second converge changed OVS:\n%s", lineDiff(first, again))
	}
	netconftest.ConvergeClean(t, newOVS(t, h0.NS), want)
	if again := ovsConfig(t, b.Dir()); again != first {
		t.Errorf("a restarted agent's converge changed OVS:\n%s", lineDiff(first, again))
	}
}

func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// What the backend makes in OVS is what the package says: a bridge per
// port group, tunnel ports with the VNI and the peer, the VLAN's patch
// tagged in the uplink bridge, taps as system ports, all marked as vdc's.
func TestOVSLayout(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 3})
	h0, h1, h2 := lab.Hosts[0], lab.Hosts[1], lab.Hosts[2]
	b := newOVS(t, h0.NS)
	want := richState(h0, h1.IPv4)
	want.Switches[0].PortGroups[0].Peers = append(want.Switches[0].PortGroups[0].Peers, h2.IPv4)
	netconftest.ConvergeClean(t, b, want)
	dir := b.Dir()
	get := func(table, record, column string) string {
		return strings.TrimSpace(vsctl(t, dir, "get", table, record, column))
	}
	web := ovs.BridgeName("pg-web")
	for _, peer := range []netip.Addr{h1.IPv4, h2.IPv4} {
		tun := ovs.TunnelName("pg-web", peer)
		if br := strings.TrimSpace(vsctl(t, dir, "port-to-br", tun)); br != web {
			t.Errorf("tunnel %s is in %s, want %s", tun, br, web)
		}
		opts := get("Interface", tun, "options")
		for _, o := range []string{`key="100"`, `remote_ip="` + peer.String() + `"`, `local_ip="` + h0.IPv4.String() + `"`} {
			if !strings.Contains(opts, o) {
				t.Errorf("tunnel %s: options %s, want %s", tun, opts, o)
			}
		}
		if typ := get("Interface", tun, "type"); typ != "vxlan" {
			t.Errorf("tunnel %s has type %s", tun, typ)
		}
	}
	pgEnd, upEnd := ovs.PatchNames("pg-v10")
	ub := ovs.UplinkBridgeName([]string{h0.Uplink})
	if br := strings.TrimSpace(vsctl(t, dir, "port-to-br", upEnd)); br != ub || get("Port", upEnd, "tag") != "10" {
		t.Errorf("VLAN patch %s: in %s with tag %s, want in %s with tag 10", upEnd, br, get("Port", upEnd, "tag"), ub)
	}
	if br := strings.TrimSpace(vsctl(t, dir, "port-to-br", pgEnd)); br != ovs.BridgeName("pg-v10") {
		t.Errorf("VLAN patch %s in %s", pgEnd, br)
	}
	for _, p := range want.Ports {
		if br := strings.TrimSpace(vsctl(t, dir, "port-to-br", p.Tap)); br != ovs.BridgeName(p.PortGroup) {
			t.Errorf("tap %s is in %s, want %s", p.Tap, br, ovs.BridgeName(p.PortGroup))
		}
		if typ := get("Interface", p.Tap, "type"); typ != `""` && typ != "system" {
			t.Errorf("tap %s is an OVS %s port, want a system port", p.Tap, typ)
		}
	}
	for _, br := range strings.Fields(vsctl(t, dir, "list-br")) {
		if ext := get("Bridge", br, "external_ids"); !strings.Contains(ext, `vdc-owner=ovs`) {
			t.Errorf("bridge %s: external_ids %s", br, ext)
		}
		for _, p := range strings.Fields(vsctl(t, dir, "list-ports", br)) {
			if ext := get("Port", p, "external_ids"); !strings.Contains(ext, `vdc-owner=ovs`) {
				t.Errorf("port %s of %s: external_ids %s", p, br, ext)
			}
		}
	}
}

// OVS records vdc did not make stay, even in vdc's bridges; those it
// made and no longer wants go, QoS records too.
func TestOVSLeftovers(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 2})
	h0 := lab.Hosts[0]
	b := newOVS(t, h0.NS)
	want := richState(h0, lab.Hosts[1].IPv4)
	netconftest.ConvergeClean(t, b, want)
	dir := b.Dir()
	vsctl(t, dir, "add-br", "br-operator", "--", "set", "Bridge", "br-operator", "datapath_type=netdev")
	vsctl(t, dir, "add-port", "br-operator", "op0", "--", "set", "Interface", "op0", "type=internal")
	vsctl(t, dir, "add-port", ovs.BridgeName("pg-iso"), "op1", "--", "set", "Interface", "op1", "type=internal")
	vsctl(t, dir, "create", "QoS", "type=linux-htb", "external_ids:who=operator")
	netconftest.ConvergeClean(t, b, want)
	if br := strings.TrimSpace(vsctl(t, dir, "port-to-br", "op1")); br != ovs.BridgeName("pg-iso") {
		t.Errorf("an operator's port in a vdc bridge was moved or removed (now in %q)", br)
	}
	netconftest.ConvergeClean(t, b, netconf.Host{})
	if brs := strings.Fields(vsctl(t, dir, "list-br")); !slices.Equal(brs, []string{"br-operator", ovs.BridgeName("pg-iso")}) {
		// A vdc bridge that holds someone else's port stays for it.
		t.Errorf("bridges after converging to nothing: %v", brs)
	}
	if ports := strings.Fields(vsctl(t, dir, "list-ports", ovs.BridgeName("pg-iso"))); !slices.Equal(ports, []string{"op1"}) {
		t.Errorf("ports left in %s: %v, want only the operator's op1", ovs.BridgeName("pg-iso"), ports)
	}
	if ports := strings.Fields(vsctl(t, dir, "list-ports", "br-operator")); !slices.Equal(ports, []string{"op0"}) {
		t.Errorf("the operator's bridge has ports %v", ports)
	}
	qos := vsctl(t, dir, "--columns=external_ids", "list", "QoS")
	if strings.Contains(qos, "vdc-owner") || !strings.Contains(qos, "operator") {
		t.Errorf("QoS records after converging to nothing: %s", qos)
	}
	if q := strings.TrimSpace(vsctl(t, dir, "--columns=external_ids", "list", "Queue")); q != "" {
		t.Errorf("Queue records after converging to nothing: %s", q)
	}
}

// A changed shape changes the tap's meter and QoS in place (the same
// QoS record); an unshaped port group has neither.
func TestShapeChangesInPlace(t *testing.T) {
	lab := netconftest.NewLab(t, netconftest.LabOptions{Hosts: 1})
	h0 := lab.Hosts[0]
	b := newOVS(t, h0.NS)
	p := netconftest.NIC("vm-a", 0, "pg-x")
	with := func(in, out uint64) netconf.Host {
		pg := netconftest.IsolatedGroup("pg-x")
		pg.Policy.In.AverageBitsPerSec, pg.Policy.Out.AverageBitsPerSec = in, out
		return netconf.Host{Switches: []netconf.Switch{netconftest.SwitchOn(h0, "sw1", pg)}, Ports: []netconf.Port{p}}
	}
	dir, br := b.Dir(), ovs.BridgeName("pg-x")
	meters := func() string {
		return ovsTool(t, dir, "ovs-ofctl", "-O", "OpenFlow13", "dump-meters", br)
	}
	netconftest.ConvergeClean(t, b, with(50e6, 30e6))
	qos := strings.TrimSpace(vsctl(t, dir, "get", "Port", p.Tap, "qos"))
	if rate := vsctl(t, dir, "get", "QoS", qos, "other_config:max-rate"); !strings.Contains(rate, "50000000") {
		t.Errorf("QoS max-rate %s, want 50000000", rate)
	}
	if m := meters(); !strings.Contains(m, "rate=30000") {
		t.Errorf("meters %s, want one at 30000 kbit/s", m)
	}
	netconftest.ConvergeClean(t, b, with(20e6, 10e6))
	if now := strings.TrimSpace(vsctl(t, dir, "get", "Port", p.Tap, "qos")); now != qos {
		t.Errorf("the QoS was remade: %s, was %s", now, qos)
	}
	if rate := vsctl(t, dir, "get", "QoS", qos, "other_config:max-rate"); !strings.Contains(rate, "20000000") {
		t.Errorf("QoS max-rate %s after the change, want 20000000", rate)
	}
	if m := meters(); !strings.Contains(m, "rate=10000") || strings.Contains(m, "rate=30000") {
		t.Errorf("meters %s after the change, want one at 10000 kbit/s", m)
	}
	netconftest.ConvergeClean(t, b, with(0, 0))
	if q := strings.TrimSpace(vsctl(t, dir, "get", "Port", p.Tap, "qos")); q != "[]" {
		t.Errorf("an unshaped tap has QoS %s", q)
	}
	if m := meters(); strings.Contains(m, "meter=") {
		t.Errorf("an unshaped port group has meters: %s", m)
	}
	if n := strings.TrimSpace(vsctl(t, dir, "--columns=_uuid", "list", "QoS")); n != "" {
		t.Errorf("QoS records left: %s", n)
	}
}
