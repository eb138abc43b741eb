package e2e

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// nicRow is one line of vdc vm nic ls -o json.
type nicRow struct {
	Name      string `json:"name"`
	PortGroup string `json:"portGroup"`
	MAC       string `json:"mac"`
	Tap       string `json:"tap"`
	LinkDown  bool   `json:"linkDown"`
}

func (cl *cluster) nic(vm, name string) nicRow {
	cl.t.Helper()
	var rows []nicRow
	cl.json(&rows, "vm", "nic", "ls", vm)
	for _, r := range rows {
		if r.Name == name {
			return r
		}
	}
	cl.t.Fatalf("vm %s has no %s: %+v", vm, name, rows)
	return nicRow{}
}

// guestIface waits until the guest of vm has an interface with mac (or,
// with gone, has none any more) and returns its name.
func (cl *cluster) guestIface(vm, mac string, gone bool) string {
	cl.t.Helper()
	name := ""
	eventually(cl.t, time.Minute, "the guest of "+vm+" to see its NIC "+mac+map[bool]string{true: " go", false: ""}[gone], func() bool {
		out := cl.vdc("vm", "exec", vm, "--", "/bin/sh", "-c", "for i in /sys/class/net/*; do echo ${i##*/} $(cat $i/address); done")
		name = ""
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[1] == mac {
				name = f[0]
			}
		}
		return (name == "") == gone
	})
	return name
}

// tapOnHost is how a host has a tap: its master (the port group's
// bridge) and whether it is up; "" when the host has no such device.
func tapOnHost(t *testing.T, lab *netLab, host, tap string) (master string, up bool, exists bool) {
	out, err := exec.Command("ip", "-n", lab.ns(host), "-o", "link", "show", "dev", tap).CombinedOutput()
	if err != nil {
		return "", false, false
	}
	f := strings.Fields(string(out))
	for i := range f {
		if f[i] == "master" && i+1 < len(f) {
			master = f[i+1]
		}
	}
	flags := ""
	if len(f) > 2 {
		flags = f[2]
	}
	return master, strings.Contains(flags, ",UP") || strings.Contains(flags, "<UP"), true
}

// bridgeOf is the bridge a VM's NIC is in on its host.
func bridgeOf(t *testing.T, lab *netLab, host, tap string) string {
	m, _, ok := tapOnHost(t, lab, host, tap)
	if !ok {
		t.Fatalf("host %s has no tap %s", host, tap)
	}
	return m
}

// A running VM gets a NIC on another port group, hot-plugged: its tap
// (named as vdc vm nic ls says) is in that port group's bridge on the
// host, and the guest reaches a VM of that port group on another host
// through it. Moved live to a third port group, the same tap changes
// bridge and reachability follows: the new port group's VM answers, the
// old one's no longer. With its link down the guest loses its carrier and
// the traffic stops; up again, it flows. It moves with the VM in a live
// migration. Removed, it leaves the guest and the host.
func TestNICHotplugAndLiveMove(t *testing.T) {
	lab, cl := newSwitchLab(t, 2, api.BackendBridge)
	cl.vdc("portgroup", "create", "web", "--switch", "dvs1", "--vxlan", "5001")
	cl.vdc("portgroup", "create", "db", "--switch", "dvs1", "--vxlan", "5002")
	cl.waitRealized("dvs1", 2)
	cl.netVM("a", "host-1", "web", "192.168.50.1")
	cl.netVM("b", "host-2", "web", "192.168.50.2")
	cl.netVM("c", "host-2", "db", "192.168.60.3")
	// b also answers on the 192.168.60.0/24 subnet, on port group web.
	cl.vdc("vm", "exec", "b", "--", "/bin/sh", "-c", "ip addr add 192.168.60.2/24 dev eth0")

	out := cl.vdc("vm", "nic", "add", "a", "db")
	t.Logf("vdc vm nic add a db: %s", strings.TrimSpace(out))
	n := cl.nic("a", "nic1")
	if n.PortGroup != "db" || n.Tap == "" || !strings.Contains(out, n.Tap) {
		t.Fatalf("nic1 of a: %+v (add said %q); want it on db with a tap", n, out)
	}
	dbBridge := bridgeOf(t, lab, "host-1", n.Tap)
	if dbBridge == "" {
		t.Fatalf("tap %s of a's nic1 is in no bridge on host-1", n.Tap)
	}
	eth := cl.guestIface("a", n.MAC, false)
	cl.vdc("vm", "exec", "a", "--", "/bin/sh", "-c", "ip link set "+eth+" up && ip addr add 192.168.60.1/24 dev "+eth)
	if !cl.pings("a", "192.168.60.3") {
		t.Fatal("a cannot ping c (db, host-2) through its hot-plugged NIC")
	}
	if cl.pings("a", "192.168.60.2") {
		t.Fatal("a reaches b's address on web through its NIC on db")
	}

	cl.vdc("vm", "nic", "update", "a", "nic1", "--portgroup", "web")
	if m := cl.nic("a", "nic1"); m.PortGroup != "web" || m.Tap != n.Tap {
		t.Fatalf("nic1 after the move: %+v; want it on web, same tap %s", m, n.Tap)
	}
	if br := bridgeOf(t, lab, "host-1", n.Tap); br == dbBridge || br != bridgeOf(t, lab, "host-1", cl.nic("a", "nic0").Tap) {
		t.Fatalf("after the move tap %s is in bridge %q: want web's (that of a's nic0), not db's %s", n.Tap, br, dbBridge)
	}
	if got := cl.guestIface("a", n.MAC, false); got != eth {
		t.Fatalf("the guest's NIC changed from %s to %s in a live move", eth, got)
	}
	if !cl.pings("a", "192.168.60.2") {
		t.Fatal("after moving nic1 to web, a cannot ping b's address on web")
	}
	if cl.pings("a", "192.168.60.3") {
		t.Fatal("after moving nic1 to web, a still reaches c on db")
	}

	cl.vdc("vm", "nic", "update", "a", "nic1", "--link", "down")
	if _, up, _ := tapOnHost(t, lab, "host-1", n.Tap); up {
		t.Error("the tap of a NIC whose link is down is up on the host")
	}
	if got := strings.TrimSpace(cl.vdc("vm", "exec", "a", "--", "/bin/cat", "/sys/class/net/"+eth+"/carrier")); got != "0" {
		t.Errorf("the guest's carrier on %s with the link down: %q", eth, got)
	}
	if cl.pings("a", "192.168.60.2") {
		t.Fatal("a pings b through a NIC whose link is down")
	}
	cl.vdc("vm", "nic", "update", "a", "nic1", "--link", "up")
	eventually(t, 30*time.Second, "a to ping b again once nic1's link is up", func() bool { return cl.pings("a", "192.168.60.2") })

	// A live migration takes the hot-plugged NIC along, in its slot, on
	// the same port group: the target's copy is laid out as the source.
	cl.vdc("vm", "migrate", "a", "--host", "host-2")
	if br := bridgeOf(t, lab, "host-2", n.Tap); br == "" || br != bridgeOf(t, lab, "host-2", cl.nic("b", "nic0").Tap) {
		t.Fatalf("after the migration tap %s is in bridge %q on host-2, want web's", n.Tap, br)
	}
	eventually(t, 30*time.Second, "a to ping b through nic1 after the migration", func() bool { return cl.pings("a", "192.168.60.2") })
	if _, _, ok := tapOnHost(t, lab, "host-1", n.Tap); ok {
		t.Errorf("host-1 kept tap %s after a left", n.Tap)
	}

	info := cl.vdc("vm", "info", "a")
	if !strings.Contains(info, n.Tap) || !strings.Contains(info, "nic1") {
		t.Errorf("vm info does not show nic1's tap %s:\n%s", n.Tap, info)
	}
	cl.vdc("vm", "nic", "rm", "a", "nic1")
	cl.guestIface("a", n.MAC, true)
	eventually(t, 30*time.Second, "host-2 to drop tap "+n.Tap, func() bool {
		_, _, ok := tapOnHost(t, lab, "host-2", n.Tap)
		return !ok
	})
	if !cl.pings("a", "192.168.50.2") {
		t.Fatal("a lost b on its first NIC after nic1 went")
	}
}
