package ovs

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/internal/netconf"
)

// ensureBridge makes the OVS bridge name, or fixes what differs on it,
// with its internal port at mtu and carrying vdc's alias (what) and
// device group in the kernel. It refuses a bridge, or a device, of that
// name that vdc did not make.
func (b *Backend) ensureBridge(ctx context.Context, cv *snap, name string, ext map[string]string, failMode string, other map[string]string, mtu int, what string) error {
	br := cv.db.bridges[name]
	if br != nil && !br.owned() {
		return fmt.Errorf("OVS bridge %s: %w (external_ids %v)", name, netconf.ErrForeign, br.ext)
	}
	if l := cv.links[name]; br == nil && l != nil {
		if owner, _, ok := netconf.AliasOwner(l.Attrs().Alias); !ok || owner != Name {
			return fmt.Errorf("bridge %s: %w (a %s, alias %q)", name, netconf.ErrForeign, l.Type(), l.Attrs().Alias)
		}
	}
	var set []string
	if br == nil || br.datapath != b.datapath {
		set = append(set, "datapath_type="+b.datapath)
	}
	if br == nil || br.failMode != failMode {
		set = append(set, "fail_mode="+failMode)
	}
	set = append(set, mapDiff("external_ids", brExt(br), ext)...)
	set = append(set, mapDiff("other_config", brOther(br), other)...)
	var args []string
	if br == nil {
		args = append(args, "--", "add-br", name)
	}
	if len(set) > 0 {
		args = append(append(args, "--", "set", "Bridge", name), set...)
	}
	if iface := cv.db.ifaces[name]; iface == nil || iface.mtuRequest != mtu {
		args = append(args, "--", "set", "Interface", name, "mtu_request="+strconv.Itoa(mtu))
	}
	if len(args) > 0 {
		if _, err := b.c.vsctl(ctx, args...); err != nil {
			return fmt.Errorf("make OVS bridge %s: %w", name, err)
		}
		if br == nil {
			b.log.Info("created OVS bridge", "bridge", name, "datapath", b.datapath, "for", what)
		} else {
			b.log.Info("changed OVS bridge", "bridge", name, "set", strings.Join(args, " "))
		}
		if err := b.rereadDB(ctx, cv); err != nil {
			return err
		}
	}
	return b.markInternal(cv, name, what)
}

// markInternal gives the bridge's internal port (a kernel device OVS
// made) vdc's alias and device group, so that the host says who made it.
func (b *Backend) markInternal(cv *snap, name, what string) error {
	l, err := b.h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("internal port of OVS bridge %s: %w", name, err)
	}
	cv.links[name] = l
	return b.fix(l, linkWant{alias: alias(what), mtu: l.Attrs().MTU, up: l.Attrs().RawFlags&1 != 0})
}

func brExt(br *dbBridge) map[string]string {
	if br == nil {
		return nil
	}
	return br.ext
}

func brOther(br *dbBridge) map[string]string {
	if br == nil {
		return nil
	}
	return br.other
}

// mapDiff are the ovs-vsctl set arguments (column:key=value) that make
// have hold every key of want with its value; other keys stay.
func mapDiff(column string, have, want map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := have[k]; !ok || v != want[k] {
			out = append(out, column+":"+k+"="+quote(want[k]))
		}
	}
	return out
}

// wantPort is an OVS port as the backend wants it.
type wantPort struct {
	name, bridge string
	role         string // ext vdc-role; "" for a bridge's own internal port
	tag          int    // 0: none
	trunks       []int  // nil: none
	typ          string // interface type; "" a system device
	options      map[string]string
	bond         []string // interfaces of a bond port
	other        map[string]string
	ext          map[string]string // besides owner and role
	// protected ports forward nothing to each other (OVS's Port
	// protected): the split horizon of a full mesh of tunnels.
	protected bool
}

func (w wantPort) extIDs() map[string]string {
	ext := map[string]string{extOwner: Name}
	if w.role != "" {
		ext[extRole] = w.role
	}
	maps.Copy(ext, w.ext)
	return ext
}

// ensurePort makes the port, moves it from another bridge, or fixes
// what differs, in one transaction.
func (b *Backend) ensurePort(ctx context.Context, cv *snap, w wantPort) error {
	p := cv.db.ports[w.name]
	if p != nil && !p.owned() && w.name != w.bridge {
		return fmt.Errorf("OVS port %s (in bridge %s): %w (external_ids %v)", w.name, p.bridge, netconf.ErrForeign, p.ext)
	}
	ifaces := []string{w.name}
	if len(w.bond) > 0 {
		ifaces = w.bond
	}
	var args []string
	remake := p == nil || p.bridge != w.bridge || !slices.Equal(p.ifaces, slices.Sorted(slices.Values(ifaces)))
	if remake {
		if p != nil {
			args = append(args, "--", "--if-exists", "del-port", w.name)
		}
		if len(w.bond) > 0 {
			args = append(append(args, "--", "add-bond", w.bridge, w.name), w.bond...)
		} else {
			args = append(args, "--", "add-port", w.bridge, w.name)
		}
		p = nil
	}
	args = append(args, b.portSets(p, w)...)
	if len(w.bond) == 0 {
		args = append(args, ifaceSets(cv.db.ifaces[w.name], remake, w)...)
	}
	if len(args) == 0 {
		return nil
	}
	if _, err := b.c.vsctl(ctx, args...); err != nil {
		return fmt.Errorf("set up OVS port %s in bridge %s: %w", w.name, w.bridge, err)
	}
	b.log.Info("configured OVS port", "port", w.name, "bridge", w.bridge, "role", w.role, "change", strings.Join(args, " "))
	return b.rereadDB(ctx, cv)
}

func (b *Backend) portSets(p *dbPort, w wantPort) []string {
	var set, args []string
	var have map[string]string
	var haveOther map[string]string
	if p != nil {
		have, haveOther = p.ext, p.other
	}
	set = append(set, mapDiff("external_ids", have, w.extIDs())...)
	set = append(set, mapDiff("other_config", haveOther, w.other)...)
	switch {
	case w.tag != 0 && (p == nil || p.tag != w.tag):
		set = append(set, "tag="+strconv.Itoa(w.tag))
	case w.tag == 0 && p != nil && p.tag != 0:
		args = append(args, "--", "clear", "Port", w.name, "tag")
	}
	switch {
	case w.trunks != nil && (p == nil || !slices.Equal(p.trunks, w.trunks)):
		var ts []string
		for _, t := range w.trunks {
			ts = append(ts, strconv.Itoa(t))
		}
		set = append(set, "trunks="+strings.Join(ts, ","))
	case w.trunks == nil && p != nil && len(p.trunks) > 0:
		args = append(args, "--", "clear", "Port", w.name, "trunks")
	}
	if p == nil && w.protected || p != nil && p.protected != w.protected {
		set = append(set, "protected="+strconv.FormatBool(w.protected))
	}
	if len(w.bond) > 0 && (p == nil || p.bondMode != "active-backup") {
		set = append(set, "bond_mode=active-backup")
	}
	if len(set) > 0 {
		args = append(append(args, "--", "set", "Port", w.name), set...)
	}
	return args
}

func ifaceSets(i *dbIface, fresh bool, w wantPort) []string {
	var set []string
	typ := w.typ
	haveType := ""
	if i != nil && !fresh {
		haveType = i.typ
	}
	if haveType != typ && !(typ == "" && haveType == "system") {
		if typ == "" {
			set = append(set, `type=""`)
		} else {
			set = append(set, "type="+typ)
		}
	}
	if w.options != nil && (i == nil || fresh || !maps.Equal(i.options, w.options)) {
		set = append(set, "options="+mapArg(w.options))
	}
	if len(set) == 0 {
		return nil
	}
	return append([]string{"--", "set", "Interface", w.name}, set...)
}

// delPort removes an OVS port the backend made.
func (b *Backend) delPort(ctx context.Context, cv *snap, name string) error {
	p := cv.db.ports[name]
	if _, err := b.c.vsctl(ctx, "--if-exists", "del-port", name); err != nil {
		return fmt.Errorf("remove OVS port %s: %w", name, err)
	}
	if p != nil {
		b.log.Info("removed OVS port", "port", name, "bridge", p.bridge, "role", p.ext[extRole])
	}
	delete(cv.db.ports, name)
	return nil
}
