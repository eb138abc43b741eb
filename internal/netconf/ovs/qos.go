package ovs

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// ensureNoFlood sets the OpenFlow no-flood flag on exactly the taps
// that receive only their own unicast: NORMAL's floods (unknown unicast
// above all) then pass them by. The flag is OpenFlow 1.0's.
func (b *Backend) ensureNoFlood(ctx context.Context, bridge string, taps []tapPolicy) error {
	out, err := b.c.run(ctx, nil, "ovs-ofctl", "show", bridge)
	if err != nil {
		return fmt.Errorf("list the OpenFlow ports of %s: %w", bridge, err)
	}
	noFlood := parseNoFlood(out)
	var errs []error
	for _, t := range taps {
		if noFlood[t.ofport] == t.guardTo() {
			continue
		}
		flag := "flood"
		if t.guardTo() {
			flag = "no-flood"
		}
		if _, err := b.c.run(ctx, nil, "ovs-ofctl", "mod-port", bridge, strconv.Itoa(t.ofport), flag); err != nil {
			errs = append(errs, fmt.Errorf("set %s on tap %s in %s: %w", flag, t.name, bridge, err))
			continue
		}
		b.log.Info("set port flooding", "bridge", bridge, "tap", t.name, "flag", flag)
	}
	return errors.Join(errs...)
}

var showPort = regexp.MustCompile(`^\s*(\w+)\(([^)]*)\):`)

// parseNoFlood reads `ovs-ofctl show`: each port's "N(name):" line and
// its "config:" line.
func parseNoFlood(out string) map[int]bool {
	res := map[int]bool{}
	port := -1
	for _, line := range strings.Split(out, "\n") {
		if m := showPort.FindStringSubmatch(line); m != nil {
			// LOCAL (the bridge's own port) has a name, not a number: its
			// config line is not a tap's.
			var err error
			if port, err = strconv.Atoi(m[1]); err != nil {
				port = -1
			}
			continue
		}
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "config:"); ok && port >= 0 {
			res[port] = strings.Contains(rest, "NO_FLOOD")
		}
	}
	return res
}

// ensureStaticMACs makes the bridge's static MAC entries exactly the
// guarded taps' MACs, each on its tap: unicast to a guest reaches it
// before it has sent anything, and nothing else can take its MAC.
func (b *Backend) ensureStaticMACs(ctx context.Context, bridge string, taps []tapPolicy) error {
	out, err := b.c.appctl(ctx, "fdb/show", bridge)
	if err != nil {
		return fmt.Errorf("list the MAC table of %s: %w", bridge, err)
	}
	have := map[string]int{} // static MAC -> port
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 4 && f[3] == "static" && f[1] == "0" {
			port, _ := strconv.Atoi(f[0])
			have[strings.ToLower(f[2])] = port
		}
	}
	want := map[string]tapPolicy{}
	for _, t := range taps {
		if t.guardTo() && len(t.mac) == 6 {
			want[t.mac.String()] = t
		}
	}
	var errs []error
	for mac := range have {
		if _, ok := want[mac]; ok {
			continue
		}
		if _, err := b.c.appctl(ctx, "fdb/del", bridge, "0", mac); err != nil {
			errs = append(errs, fmt.Errorf("remove static MAC %s from %s: %w", mac, bridge, err))
			continue
		}
		b.log.Info("removed static MAC entry", "bridge", bridge, "mac", mac)
	}
	for mac, t := range want {
		if have[mac] == t.ofport {
			continue
		}
		if _, err := b.c.appctl(ctx, "fdb/add", bridge, t.name, "0", mac); err != nil {
			errs = append(errs, fmt.Errorf("add static MAC %s of tap %s to %s: %w", mac, t.name, bridge, err))
			continue
		}
		b.log.Info("added static MAC entry", "bridge", bridge, "tap", t.name, "mac", mac)
	}
	return errors.Join(errs...)
}

// ensureQoS shapes what the tap sends to its VM (In) with a linux-htb
// QoS of one queue, limited to the average rate, or removes the tap's
// QoS when In is unlimited. The kernel's htb on the tap does the work,
// in either datapath: OVS hands the tap its frames through the tap's
// queueing discipline.
func (b *Backend) ensureQoS(ctx context.Context, cv *snap, t tapPolicy) error {
	p := cv.db.ports[t.name]
	if p == nil {
		return nil
	}
	s := t.policy.In
	q := cv.db.qos[p.qos]
	if s.AverageBitsPerSec == 0 {
		if p.qos == "" {
			return nil
		}
		if _, err := b.c.vsctl(ctx, "clear", "Port", t.name, "qos"); err != nil {
			return fmt.Errorf("remove the In shaping of tap %s: %w", t.name, err)
		}
		b.log.Info("removed In shaping", "tap", t.name)
		return nil
	}
	rate := strconv.FormatUint(s.AverageBitsPerSec, 10)
	burst := s.BurstBytes
	if burst == 0 {
		burst = max(64<<10, s.AverageBitsPerSec/8/100)
	}
	burstBits := strconv.FormatUint(max(burst, uint64(t.mtu+14))*8, 10)
	qosOther := map[string]string{"max-rate": rate}
	queueOther := map[string]string{"max-rate": rate, "burst": burstBits}
	owned := q != nil && q.ext[extOwner] == Name && q.typ == "linux-htb" && q.referencers == 1
	if owned {
		queue := cv.db.queues[q.queues["0"]]
		if queue != nil && len(q.queues) == 1 {
			args := append([]string{}, setArgs("QoS", q.uuid, mapDiff("other_config", q.other, qosOther))...)
			args = append(args, setArgs("Queue", queue.uuid, mapDiff("other_config", queue.other, queueOther))...)
			if len(args) == 0 {
				return nil
			}
			if _, err := b.c.vsctl(ctx, args...); err != nil {
				return fmt.Errorf("change the In shaping of tap %s to %s bit/s: %w", t.name, rate, err)
			}
			b.log.Info("changed In shaping", "tap", t.name, "rate", rate, "burst_bits", burstBits)
			return nil
		}
	}
	ext := "external_ids:" + extOwner + "=" + Name
	_, err := b.c.vsctl(ctx, "--", "set", "Port", t.name, "qos=@q",
		"--", "--id=@q", "create", "QoS", "type=linux-htb", "other_config:max-rate="+rate, ext, "external_ids:vdc-port="+quote(t.name), "queues:0=@q0",
		"--", "--id=@q0", "create", "Queue", "other_config:max-rate="+rate, "other_config:burst="+burstBits, ext)
	if err != nil {
		return fmt.Errorf("shape tap %s towards its VM at %s bit/s: %w", t.name, rate, err)
	}
	b.log.Info("set In shaping", "tap", t.name, "rate", rate, "burst_bits", burstBits)
	return nil
}

func setArgs(table, record string, set []string) []string {
	if len(set) == 0 {
		return nil
	}
	return append([]string{"--", "set", table, record}, set...)
}

// removeStaleQoS destroys the QoS and Queue records the backend made
// that no port (or QoS) uses any more: both tables keep unused records.
func (b *Backend) removeStaleQoS(ctx context.Context, cv *snap) error {
	if err := b.rereadDB(ctx, cv); err != nil {
		return err
	}
	used := map[string]bool{}
	var args []string
	for _, q := range cv.db.qos {
		if q.ext[extOwner] == Name && q.referencers == 0 {
			args = append(args, "--", "destroy", "QoS", q.uuid)
			continue
		}
		for _, u := range q.queues {
			used[u] = true
		}
	}
	for _, q := range cv.db.queues {
		if q.ext[extOwner] == Name && !used[q.uuid] {
			args = append(args, "--", "destroy", "Queue", q.uuid)
		}
	}
	if len(args) == 0 {
		return nil
	}
	if _, err := b.c.vsctl(ctx, args...); err != nil {
		return fmt.Errorf("remove unused QoS records: %w", err)
	}
	b.log.Info("removed unused QoS records", "records", len(args)/3)
	return nil
}
