package ovs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/internal/netconf"
)

// Port-group policies, in each port group's bridge (see doc.go): table 0
// checks what enters from a tap (forged transmits, Out shaping with a
// meter), table 1 forwards with NORMAL (MAC learning), table 2 forwards
// frames that must not be learned by flooding.

// cookie marks the backend's flows.
const cookie = "0x766463"

// mcast matches the group bit of the destination: broadcast and
// multicast frames.
const mcast = "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00"

type tapPolicy struct {
	name   string
	ofport int
	mac    net.HardwareAddr
	policy netconf.Policy
	mtu    int
}

func (t tapPolicy) guardFrom() bool { return !t.policy.AllowForgedTransmits }
func (t tapPolicy) guardTo() bool {
	return !t.policy.AllowMACChanges && !t.policy.AllowPromiscuous
}
func (t tapPolicy) metered() bool { return t.policy.Out.AverageBitsPerSec > 0 }

// convergePolicy enforces the policy of the port group on its taps: the
// bridge's flow table as a whole, the meters of shaped taps, the
// no-flood flag and static MAC entry of the taps that receive only
// their own unicast, and the QoS of taps shaped towards the VM.
func (b *Backend) convergePolicy(ctx context.Context, cv *snap, pg *pgPlan, rep *netconf.Report) {
	if pg.skip {
		return
	}
	var taps []tapPolicy
	for _, pp := range pg.taps {
		i := cv.db.ifaces[pp.port.Tap]
		if i == nil || i.ofport <= 0 {
			rep.Ports[pp.port.Tap] = fmt.Errorf("tap %s of %q: OVS gave it no OpenFlow port number (%s), so its port group's policy cannot be enforced", pp.port.Tap, netconf.PortAlias(pp.port), ifaceErr(i))
			continue
		}
		tp := tapPolicy{name: pp.port.Tap, ofport: i.ofport, mac: pp.port.MAC, policy: pg.pg.Policy, mtu: pg.mtu}
		if len(tp.mac) != 6 && (tp.guardFrom() || tp.guardTo()) {
			rep.Ports[tp.name] = fmt.Errorf("tap %s of %q has no MAC: port group %s guards MACs, so the tap sends and receives only broadcast and multicast, or nothing", tp.name, netconf.PortAlias(pp.port), pg)
		}
		taps = append(taps, tp)
	}
	var errs []error
	if err := b.ensureMeters(ctx, pg.bridge, taps, false); err != nil {
		errs = append(errs, err)
	}
	if err := b.replaceFlows(ctx, pg.bridge, flowTable(taps)); err != nil {
		errs = append(errs, err)
	}
	if err := b.ensureMeters(ctx, pg.bridge, taps, true); err != nil {
		errs = append(errs, err)
	}
	if err := b.ensureNoFlood(ctx, pg.bridge, taps); err != nil {
		errs = append(errs, err)
	}
	if err := b.ensureStaticMACs(ctx, pg.bridge, taps); err != nil {
		errs = append(errs, err)
	}
	for _, t := range taps {
		if err := b.ensureQoS(ctx, cv, t); err != nil {
			rep.Ports[t.name] = errors.Join(rep.Ports[t.name], err)
		}
	}
	if len(errs) > 0 {
		pg.err = errors.Join(pg.err, fmt.Errorf("port group %s: policy: %w", pg, errors.Join(errs...)))
	}
}

func ifaceErr(i *dbIface) string {
	if i == nil || i.err == "" {
		return "no error given"
	}
	return i.err
}

// flowTable is a port group bridge's whole flow table.
func flowTable(taps []tapPolicy) []string {
	flows := []string{"table=0,priority=0,actions=goto_table:1", "table=1,priority=0,actions=NORMAL"}
	var guarded []tapPolicy // receive only their own unicast
	unlearned := false
	for _, t := range taps {
		meter := ""
		if t.metered() {
			meter = "meter:" + strconv.Itoa(t.ofport) + ","
		}
		in := "in_port=" + strconv.Itoa(t.ofport)
		own := ""
		if len(t.mac) == 6 {
			own = fmt.Sprintf("table=0,priority=100,%s,dl_src=%s,actions=%sgoto_table:1", in, t.mac, meter)
		}
		switch {
		case t.guardFrom():
			if own != "" {
				flows = append(flows, own)
			}
			flows = append(flows, fmt.Sprintf("table=0,priority=90,%s,actions=drop", in))
		case t.guardTo():
			// Forged frames pass, but NORMAL must not learn their source
			// behind this tap, or unicast to it would come here.
			if own != "" {
				flows = append(flows, own)
			}
			flows = append(flows, fmt.Sprintf("table=0,priority=90,%s,actions=%sgoto_table:2", in, meter))
			unlearned = true
		case t.metered():
			flows = append(flows, fmt.Sprintf("table=0,priority=90,%s,actions=%sgoto_table:1", in, meter))
		}
		if t.guardTo() {
			guarded = append(guarded, t)
		}
	}
	if len(guarded) > 0 {
		// Guarded taps are no-flood: NORMAL gives them only unicast to
		// their own MAC (a static MAC entry); broadcast and multicast go
		// to them here.
		var outs []string
		for _, t := range guarded {
			outs = append(outs, "output:"+strconv.Itoa(t.ofport))
		}
		flows = append(flows, fmt.Sprintf("table=1,priority=10,%s,actions=NORMAL,%s", mcast, strings.Join(outs, ",")))
		if unlearned {
			for _, t := range guarded {
				if len(t.mac) == 6 {
					flows = append(flows, fmt.Sprintf("table=2,priority=20,dl_dst=%s,actions=output:%d", t.mac, t.ofport))
				}
			}
			flows = append(flows, fmt.Sprintf("table=2,priority=10,%s,actions=FLOOD,%s", mcast, strings.Join(outs, ",")))
		}
	}
	if unlearned {
		flows = append(flows, "table=2,priority=0,actions=FLOOD")
	}
	for i, f := range flows {
		flows[i] = "cookie=" + cookie + "," + f
	}
	return flows
}

// replaceFlows makes the bridge's flow table exactly flows, changing
// nothing when it already is.
func (b *Backend) replaceFlows(ctx context.Context, bridge string, flows []string) error {
	file := b.flowsFile(bridge)
	if err := os.WriteFile(file, []byte(strings.Join(flows, "\n")+"\n"), 0o600); err != nil {
		return fmt.Errorf("write the flows of %s: %w", bridge, err)
	}
	diff, err := b.c.ofctl(ctx, "diff-flows", bridge, file)
	if err == nil && strings.TrimSpace(diff) == "" {
		return nil
	}
	if _, err := b.c.ofctl(ctx, "replace-flows", bridge, file); err != nil {
		return fmt.Errorf("set the flows of %s: %w", bridge, err)
	}
	b.log.Info("replaced flows", "bridge", bridge, "flows", len(flows), "diff", strings.TrimSpace(diff))
	return nil
}

// flowsFile is where the bridge's wanted flows are written for
// ovs-ofctl to compare and load.
func (b *Backend) flowsFile(bridge string) string { return filepath.Join(b.c.dir, bridge+".flows") }

// meterSpec is a tap's Out meter as dump-meters prints it (after
// "meter=N "): a policer at the average rate that lets a burst through.
func meterSpec(t tapPolicy) string {
	s := t.policy.Out
	burst := s.BurstBytes
	if burst == 0 {
		// As the bridge backend's shaper: the larger of 64 KiB and 10 ms
		// at the average rate.
		burst = max(64<<10, s.AverageBitsPerSec/8/100)
	}
	burst = max(burst, uint64(t.mtu+14))
	rate := (s.AverageBitsPerSec + 999) / 1000
	return fmt.Sprintf("kbps burst stats bands=type=drop rate=%d burst_size=%d", rate, (burst*8+999)/1000)
}

// ensureMeters adds and changes the meters of metered taps (meter ID:
// the tap's OpenFlow port), or, with remove, deletes the others (after
// the flows that used them are gone).
func (b *Backend) ensureMeters(ctx context.Context, bridge string, taps []tapPolicy, remove bool) error {
	out, err := b.c.ofctl(ctx, "dump-meters", bridge)
	if err != nil {
		return fmt.Errorf("list the meters of %s: %w", bridge, err)
	}
	have := parseMeters(out)
	want := map[int]string{}
	for _, t := range taps {
		if t.metered() {
			want[t.ofport] = meterSpec(t)
		}
	}
	var errs []error
	if remove {
		for id := range have {
			if _, ok := want[id]; ok {
				continue
			}
			if _, err := b.c.ofctl(ctx, "del-meter", bridge, "meter="+strconv.Itoa(id)); err != nil {
				errs = append(errs, fmt.Errorf("remove meter %d of %s: %w", id, bridge, err))
				continue
			}
			b.log.Info("removed meter", "bridge", bridge, "meter", id)
		}
		return errors.Join(errs...)
	}
	for _, id := range slices.Sorted(intKeys(want)) {
		spec, cur := want[id], have[id]
		if cur == spec {
			continue
		}
		verb := "add-meter"
		if cur != "" {
			verb = "mod-meter"
		}
		arg := "meter=" + strconv.Itoa(id) + "," + strings.ReplaceAll(strings.Replace(spec, " bands=", ",bands=", 1), " ", ",")
		if _, err := b.c.ofctl(ctx, verb, bridge, arg); err != nil {
			errs = append(errs, fmt.Errorf("set meter %d of %s (%s): %w", id, bridge, spec, err))
			continue
		}
		b.log.Info("set meter", "bridge", bridge, "meter", id, "spec", spec, "was", cur)
	}
	return errors.Join(errs...)
}

// parseMeters reads dump-meters: "meter=N flags bands=" lines, each
// followed by its bands.
func parseMeters(out string) map[int]string {
	meters := map[int]string{}
	id := -1
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "meter="):
			num, rest, _ := strings.Cut(strings.TrimPrefix(line, "meter="), " ")
			n, err := strconv.Atoi(num)
			if err != nil {
				id = -1
				continue
			}
			id = n
			meters[id] = rest
		case id >= 0 && strings.HasPrefix(line, "type="):
			meters[id] += line
		}
	}
	return meters
}

func intKeys[V any](m map[int]V) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
