package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// guestIface is the guest's interface with this MAC ("" when it has none).
func guestIface(t *testing.T, d *Driver, id, mac string) string {
	t.Helper()
	out := exec1(t, d, id, "for i in /sys/class/net/*; do echo ${i##*/} $(cat $i/address); done")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[1] == mac {
			return f[0]
		}
	}
	return ""
}

// waitIface waits until the guest has (want) or lacks (!want) an
// interface with mac, and returns its name.
func waitIface(t *testing.T, d *Driver, id, mac string, want bool) string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		name := guestIface(t, d, id, mac)
		if (name != "") == want {
			return name
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guest still %s an interface with MAC %s after a minute", map[bool]string{true: "lacks", false: "has"}[want], mac)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// carrier is what the guest sees of an interface's link: "1" or "0"
// (it brings the interface up first: carrier reads only on one that is).
func carrier(t *testing.T, d *Driver, id, iface string) string {
	t.Helper()
	return strings.TrimSpace(exec1(t, d, id, "ip link set dev "+iface+" up && cat /sys/class/net/"+iface+"/carrier"))
}

func waitCarrier(t *testing.T, d *Driver, id, iface, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for carrier(t, d, id, iface) != want {
		if time.Now().After(deadline) {
			t.Fatalf("the guest's %s carrier is not %s after 30s", iface, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// hmpNetwork is QEMU's own account of the VM's NICs and backends.
func hmpNetwork(t *testing.T, d *Driver, id string) string {
	t.Helper()
	v, err := d.get(id)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := v.Execute(context.Background(), "human-monitor-command", map[string]any{"command-line": "info network"}, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// A NIC hot-plugged into a running test guest shows in it with its MAC;
// its link goes down and up as the guest sees its carrier; the NIC the VM
// started with (in a root port of its own) and the hot-plugged one both
// unplug live; a live migration after these changes lands on a copy laid
// out as the source is (the boot NIC's empty port, the hot-plugged NIC in
// its slot), and the VM's next start has its link state.
func TestNICHotplugRealGuest(t *testing.T) {
	g := testGuest(t)
	tls, hostname := tlsDir(t)
	ctx := context.Background()
	base := t.TempDir()
	src := newMigrationDriver(t, filepath.Join(base, "a"), tls)
	dst := newMigrationDriver(t, filepath.Join(base, "b"), tls)
	cfg := testConfig(g, filepath.Join(base, "a", "vm"), "nic1")
	os.MkdirAll(cfg.Dir, 0o700)
	nic0 := hypervisor.NICConfig{Name: "nic0", MAC: "52:54:00:5e:01:00", Model: "virtio"}
	cfg.NICs = []hypervisor.NICConfig{nic0}
	if err := src.Define(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		src.PowerOff(context.Background(), cfg.ID)
		dst.PowerOff(context.Background(), cfg.ID)
	})
	waitGuest(t, src, cfg.ID)
	waitIface(t, src, cfg.ID, nic0.MAC, true)

	nic1 := hypervisor.NICConfig{Name: "nic1", MAC: "52:54:00:5e:01:01", Model: "virtio", Slot: "hp0"}
	if err := src.AddNIC(ctx, cfg.ID, nic1); err != nil {
		t.Fatal(err)
	}
	eth := waitIface(t, src, cfg.ID, nic1.MAC, true)
	if got := strings.TrimSpace(exec1(t, src, cfg.ID, "cat /sys/class/net/"+eth+"/address")); got != nic1.MAC {
		t.Fatalf("the guest's %s has address %q, want %s", eth, got, nic1.MAC)
	}
	waitCarrier(t, src, cfg.ID, eth, "1")
	nic1.LinkDown = true
	if err := src.UpdateNIC(ctx, cfg.ID, nic1); err != nil {
		t.Fatal(err)
	}
	waitCarrier(t, src, cfg.ID, eth, "0")
	nic1.LinkDown = false
	if err := src.UpdateNIC(ctx, cfg.ID, nic1); err != nil {
		t.Fatal(err)
	}
	waitCarrier(t, src, cfg.ID, eth, "1")

	// The NIC the VM started with goes live too: it has a port of its own.
	if err := src.RemoveNIC(ctx, cfg.ID, "nic0"); err != nil {
		t.Fatal(err)
	}
	waitIface(t, src, cfg.ID, nic0.MAC, false)
	if info := hmpNetwork(t, src, cfg.ID); strings.Contains(info, "nic0") {
		t.Errorf("QEMU still has nic0 or its backend:\n%s", info)
	}

	// The copy is built from the config as it is now, with the source's
	// hardware: nic0's port stays, empty; nic1 is in hp0.
	hw, err := src.Hardware(ctx, cfg.ID)
	if err != nil || strings.Join(hw.NICPorts, ",") != "nic0" {
		t.Fatalf("hardware %+v %v: want nic0's root port", hw, err)
	}
	exec1(t, src, cfg.ID, "echo marker > /tmp/marker")
	dcfg := cfg
	dcfg.Dir = filepath.Join(base, "b", "vm")
	os.MkdirAll(dcfg.Dir, 0o700)
	dcfg.NICs, dcfg.Hardware = []hypervisor.NICConfig{nic1}, &hw
	migrate(t, src, dst, dcfg, false, hostname)
	waitGuest(t, dst, cfg.ID)
	if got := exec1(t, dst, cfg.ID, "cat /tmp/marker"); got != "marker\n" {
		t.Fatalf("the guest's memory after the migration: %q", got)
	}
	if got := guestIface(t, dst, cfg.ID, nic1.MAC); got != eth {
		t.Fatalf("after the migration the guest's NIC with MAC %s is %q, want %s", nic1.MAC, got, eth)
	}
	nicsOnTarget(t, dst, cfg.ID, nic1)
}

// nicsOnTarget checks a migrated VM's NICs on its new host: the hot-plugged
// nic1 unplugs there too, a new NIC goes into the slot it left, its link
// down from the start, an e1000 goes into another, and the next start
// has the new NIC in its slot with its link down.
func nicsOnTarget(t *testing.T, dst *Driver, id string, nic1 hypervisor.NICConfig) {
	t.Helper()
	ctx := context.Background()
	if err := dst.RemoveNIC(ctx, id, "nic1"); err != nil {
		t.Fatal(err)
	}
	waitIface(t, dst, id, nic1.MAC, false)
	nic2 := hypervisor.NICConfig{Name: "nic2", MAC: "52:54:00:5e:01:02", Model: "virtio", Slot: "hp0", LinkDown: true}
	if err := dst.AddNIC(ctx, id, nic2); err != nil {
		t.Fatal(err)
	}
	if err := dst.AddNIC(ctx, id, nic2); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Fatalf("add nic2 twice: %v", err)
	}
	eth2 := waitIface(t, dst, id, nic2.MAC, true)
	waitCarrier(t, dst, id, eth2, "0")
	nic3 := hypervisor.NICConfig{Name: "nic3", MAC: "52:54:00:5e:01:03", Model: "e1000", Slot: "hp1"}
	if err := dst.AddNIC(ctx, id, nic3); err != nil {
		t.Fatal(err)
	}
	if info := hmpNetwork(t, dst, id); !strings.Contains(info, "nic3: index=0,type=nic,model=e1000,macaddr="+nic3.MAC) {
		t.Errorf("QEMU's info network after an e1000 was plugged in:\n%s", info)
	}
	if err := dst.PowerOff(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := dst.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	waitGuest(t, dst, id)
	waitCarrier(t, dst, id, waitIface(t, dst, id, nic2.MAC, true), "0")
}

// A hot-plugged NIC's backend has the options its next start gives it.
func TestNICNetdevArgsFollowTheCommandLine(t *testing.T) {
	got := netdevArgs("tap,id=net-nic1,ifname=vt0123abcdn1,script=no,downscript=no,vnet_hdr=off")
	want := map[string]any{"type": "tap", "id": "net-nic1", "ifname": "vt0123abcdn1", "script": "no", "downscript": "no", "vnet_hdr": false}
	if len(got) != len(want) {
		t.Fatalf("netdev_add arguments %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("netdev_add arguments %v, want %v", got, want)
		}
	}
	if got := netdevArgs("user,id=net-nic0"); len(got) != 2 || got["type"] != "user" || got["id"] != "net-nic0" {
		t.Fatalf("NAT netdev_add arguments %v", got)
	}
}
