package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
)

var shaped = netconf.Policy{
	In:  netconf.Shape{AverageBitsPerSec: 20e6, PeakBitsPerSec: 40e6, BurstBytes: 128 << 10},
	Out: netconf.Shape{AverageBitsPerSec: 30e6},
}

func TestConvergeTwiceChangesNothing(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	ports := []Port{
		a.port(Port{Policy: shaped}),
		b.port(Port{Policy: netconf.Policy{AllowPromiscuous: true, In: netconf.Shape{AverageBitsPerSec: 10e6}}}),
	}
	l.converge(ports...)
	rules, qdiscs := l.ruleset(), l.tcState()
	for _, want := range []string{"chain from-tapa", "chain to-tapa", "chain from-tapb", `set from_vm map=true {"tapa", "tapb"}`, `set to_vm map=true {"tapa"}`} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
	if strings.Contains(rules, "to-tapb") {
		t.Errorf("promiscuous tapb has a filter on what it receives:\n%s", rules)
	}
	for _, want := range []string{"tapa(", "tapb(", IfbName("tapa") + "("} {
		if !strings.Contains(qdiscs, want) {
			t.Errorf("tc state lacks %q:\n%s", want, qdiscs)
		}
	}
	if tbf := l.rootTbf(IfbName("tapa")); tbf == nil || tbf.Rate != 30e6/8 {
		t.Errorf("ifb of tapa: root tbf %+v, want rate %d bytes/s", tbf, uint64(30e6/8))
	}

	l.converge(ports...)
	if again := l.ruleset(); again != rules {
		t.Errorf("second converge changed the ruleset:\nbefore:\n%s\nafter:\n%s", rules, again)
	}
	if again := l.tcState(); again != qdiscs {
		t.Errorf("second converge changed qdiscs or remade devices:\nbefore:\n%s\nafter:\n%s", qdiscs, again)
	}
}

func TestRemovedPortLosesRulesAndShaping(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	b := l.addVM("tapb", "52:54:00:00:00:0b")
	l.addVM("tapc", "52:54:00:00:00:0c")
	// Someone else's qdisc on a tap vdc does not list: it stays.
	foreign := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.index("tapc"), Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT},
		Rate:       1e6, Limit: 1 << 20, Buffer: netlink.Xmittime(1e6, 1<<16),
	}
	if err := l.h.QdiscAdd(foreign); err != nil {
		t.Fatalf("add a foreign tbf to tapc: %v", err)
	}
	l.converge(a.port(Port{Policy: shaped}), b.port(Port{Policy: shaped}))

	l.converge(b.port(Port{Policy: shaped}))
	rules, qdiscs := l.ruleset(), l.tcState()
	if strings.Contains(rules, "tapa") {
		t.Errorf("rules for removed tapa remain:\n%s", rules)
	}
	if !strings.Contains(rules, "from-tapb") {
		t.Errorf("rules for tapb are gone:\n%s", rules)
	}
	if l.rootTbf("tapa") != nil || strings.Contains(qdiscs, IfbName("tapa")) || l.hasIngress("tapa") {
		t.Errorf("shaping of removed tapa remains:\n%s", qdiscs)
	}
	if l.rootTbf("tapb") == nil || !strings.Contains(qdiscs, IfbName("tapb")) || !l.hasIngress("tapb") {
		t.Errorf("shaping of tapb is gone:\n%s", qdiscs)
	}
	if q := l.rootTbf("tapc"); q == nil || q.Handle != netlink.MakeHandle(1, 0) {
		t.Errorf("the foreign tbf on tapc was touched:\n%s", qdiscs)
	}
	// tapa's frames still reach the bridge: its redirect went with its ifb.
	a.sendTo(b.mac, "after-removal")
	b.receiveTag("after-removal")

	// Unshaping a listed port removes its qdiscs and ifb but not its rules.
	l.converge(b.port(Port{}))
	if l.rootTbf("tapb") != nil || l.hasIngress("tapb") || strings.Contains(l.tcState(), IfbName("tapb")) {
		t.Errorf("unshaped tapb keeps shaping:\n%s", l.tcState())
	}
	b.sendTo(a.mac, "unshaped")
	a.receiveTag("unshaped")

	l.converge()
	if rules := l.ruleset(); strings.Contains(rules, "table 7 "+TableName) {
		t.Errorf("table bridge %s remains with no ports:\n%s", TableName, rules)
	}
	if q := l.rootTbf("tapc"); q == nil {
		t.Errorf("the foreign tbf on tapc was removed")
	}
}

func TestInvalidPortChangesNothing(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	l.converge(a.port(Port{Policy: shaped}))
	rules, qdiscs := l.ruleset(), l.tcState()

	bad := a.port(Port{})
	bad.MAC = nil
	err := Converge(context.Background(), l.ns, []Port{bad})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "tapa") {
		t.Fatalf("converge with a port without MAC: %v, want an invalid-input error naming tapa", err)
	}
	if l.ruleset() != rules || l.tcState() != qdiscs {
		t.Errorf("a refused converge changed the host")
	}
}

func TestMissingTapGetsRulesAndReportsShaping(t *testing.T) {
	l := newLab(t)
	a := l.addVM("tapa", "52:54:00:00:00:0a")
	ghost := Port{Tap: "tapz", MAC: mustMAC("52:54:00:00:00:0f"), Policy: shaped}
	err := Converge(context.Background(), l.ns, []Port{a.port(Port{Policy: shaped}), ghost})
	var pe *PortError
	if !errors.As(err, &pe) || pe.Tap != "tapz" {
		t.Fatalf("converge with a missing tap: %v, want a PortError for tapz", err)
	}
	if !strings.Contains(l.ruleset(), "chain from-tapz") {
		t.Errorf("missing tapz got no security rules, so it would be unguarded once made")
	}
	if l.rootTbf("tapa") == nil {
		t.Errorf("tapa was not shaped because tapz is missing")
	}
}

func TestValidate(t *testing.T) {
	mac := mustMAC("52:54:00:00:00:0a")
	for _, c := range []struct {
		name string
		p    Port
		ok   bool
	}{
		{"plain", Port{Tap: "tapa", MAC: mac}, true},
		{"shaped", Port{Tap: "tapa", MAC: mac, Policy: shaped}, true},
		{"peak equal to average", Port{Tap: "tapa", MAC: mac, Policy: netconf.Policy{In: netconf.Shape{AverageBitsPerSec: 1e6, PeakBitsPerSec: 1e6}}}, true},
		{"no tap", Port{MAC: mac}, false},
		{"long tap", Port{Tap: "tap0123456789abc", MAC: mac}, false},
		{"no MAC", Port{Tap: "tapa"}, false},
		{"multicast MAC", Port{Tap: "tapa", MAC: mustMAC("01:00:5e:00:00:01")}, false},
		{"peak below average", Port{Tap: "tapa", MAC: mac, Policy: netconf.Policy{Out: netconf.Shape{AverageBitsPerSec: 2e6, PeakBitsPerSec: 1e6}}}, false},
		{"burst without rate", Port{Tap: "tapa", MAC: mac, Policy: netconf.Policy{In: netconf.Shape{BurstBytes: 1000}}}, false},
		{"rate too low", Port{Tap: "tapa", MAC: mac, Policy: netconf.Policy{In: netconf.Shape{AverageBitsPerSec: 100}}}, false},
		{"burst too long", Port{Tap: "tapa", MAC: mac, Policy: netconf.Policy{In: netconf.Shape{AverageBitsPerSec: 8000, BurstBytes: 1 << 30}}}, false},
	} {
		err := Validate(c.p)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, api.ErrInvalid)) {
			t.Errorf("%s: Validate = %v, want ok=%v", c.name, err, c.ok)
		}
	}
	err := Converge(context.Background(), 0, []Port{{Tap: "tapa", MAC: mac}, {Tap: "tapa", MAC: mac}})
	if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "twice") {
		t.Errorf("converge with a tap listed twice: %v", err)
	}
}

func (l *lab) index(dev string) int {
	l.t.Helper()
	link, err := l.h.LinkByName(dev)
	if err != nil {
		l.t.Fatalf("find %s: %v", dev, err)
	}
	return link.Attrs().Index
}

func (l *lab) hasIngress(dev string) bool {
	l.t.Helper()
	link, err := l.h.LinkByName(dev)
	if err != nil {
		l.t.Fatalf("find %s: %v", dev, err)
	}
	qs, err := l.h.QdiscList(link)
	if err != nil {
		l.t.Fatalf("list qdiscs of %s: %v", dev, err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == netlink.HANDLE_INGRESS {
			return true
		}
	}
	return false
}
