package netconf

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestNamesAreShortStableAndDistinct(t *testing.T) {
	type namer struct {
		name string
		fn   func(string) string
	}
	namers := []namer{
		{"bridge", BridgeName},
		{"vxlan", VXLANName},
		{"vlan", VLANName},
		{"tap", func(id string) string { return TapName(id, 0) }},
	}
	seen := map[string]string{}
	for _, n := range namers {
		for i := range 2000 {
			id := fmt.Sprintf("7f3c%04d-%s", i, strings.Repeat("x", i%50))
			got := n.fn(id)
			if err := ValidName(got); err != nil {
				t.Fatalf("%s name of %q: %v", n.name, id, err)
			}
			if again := n.fn(id); again != got {
				t.Fatalf("%s name of %q not stable: %q then %q", n.name, id, got, again)
			}
			key := n.name + " " + id
			if prev, dup := seen[got]; dup {
				t.Fatalf("%s and %s both named %q", prev, key, got)
			}
			seen[got] = key
		}
	}
}

func TestTapNameNICs(t *testing.T) {
	const vm = "0b8e6b0e-3f2a-4c53-9a7e-0d1c2b3a4f5e"
	if got, want := TapName(vm, 0), "vt"+hash(vm, 8)+"n0"; got != want {
		t.Fatalf("TapName(vm, 0) = %q, want %q", got, want)
	}
	seen := map[string]int{}
	for _, nic := range []int{0, 1, 9, 10, 99, 9999, 10000, 10001, 123456, -1} {
		name := TapName(vm, nic)
		if len(name) > MaxNameLen {
			t.Fatalf("TapName(vm, %d) = %q: %d characters", nic, name, len(name))
		}
		if prev, dup := seen[name]; dup {
			t.Fatalf("nic %d and %d share tap %q", prev, nic, name)
		}
		seen[name] = nic
	}
	if TapName(vm, 0) == TapName(vm+"x", 0) {
		t.Fatal("two VMs got the same tap name")
	}
}

func TestAliasRoundTrip(t *testing.T) {
	sw := Switch{ID: "s-1", Name: "dvs1"}
	pg := PortGroup{ID: "p-1", Name: "web"}
	alias := Alias("bridge", PortGroupAlias(sw, pg))
	if alias != "vdc/bridge: portgroup web (switch dvs1)" {
		t.Fatalf("alias %q", alias)
	}
	backend, what, ok := AliasOwner(alias)
	if !ok || backend != "bridge" || what != "portgroup web (switch dvs1)" {
		t.Fatalf("AliasOwner(%q) = %q, %q, %v", alias, backend, what, ok)
	}
	if got := Alias("ovs", PortAlias(Port{Tap: "vt1", Alias: NICAlias("db1", 0)})); got != "vdc/ovs: vm db1 nic0" {
		t.Fatalf("port alias %q", got)
	}
	if got := PortAlias(Port{Tap: "vt1"}); got != "port vt1" {
		t.Fatalf("port alias without a name: %q", got)
	}
	if got := PortGroupAlias(Switch{ID: "s-9"}, PortGroup{ID: "p-9"}); got != "portgroup p-9 (switch s-9)" {
		t.Fatalf("alias without names: %q", got)
	}
	for _, foreign := range []string{"", "uplink to rack 3", "vdc/", "vdc/: x", "vdc:bridge x"} {
		if _, _, ok := AliasOwner(foreign); ok {
			t.Errorf("AliasOwner(%q) claims a vdc device", foreign)
		}
	}
	if long := Alias("bridge", strings.Repeat("a", 400)); len(long) != 255 {
		t.Fatalf("long alias is %d bytes, want 255 (IFALIASZ-1)", len(long))
	}
}

func TestValidName(t *testing.T) {
	for _, bad := range []string{"", "0123456789abcdef", "a b", "a/b", "a:b", ".", ".."} {
		if ValidName(bad) == nil {
			t.Errorf("ValidName(%q) accepted it", bad)
		}
	}
	for _, good := range []string{"eth0", "vt12345678n0", "0123456789abcde"} {
		if err := ValidName(good); err != nil {
			t.Errorf("ValidName(%q): %v", good, err)
		}
	}
}

func TestMTUHelpers(t *testing.T) {
	if got := (Switch{}).EffectiveMTU(); got != 1500 {
		t.Fatalf("default MTU %d", got)
	}
	if got := (Switch{MTU: 9000}).EffectiveMTU(); got != 9000 {
		t.Fatalf("MTU %d", got)
	}
	if got := VXLANOverhead(netip.MustParseAddr("192.0.2.1")); got != 50 {
		t.Fatalf("IPv4 overhead %d", got)
	}
	if got := VXLANOverhead(netip.MustParseAddr("2001:db8::1")); got != 70 {
		t.Fatalf("IPv6 overhead %d", got)
	}
}
