package ovs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"

	"github.com/vdc-project/vdc/internal/netconf"
)

// convergePortGroup makes the port group's bridge and, for VXLAN, a
// tunnel port per peer; for a VLAN, the patch to its uplink bridge,
// tagged there.
func (b *Backend) convergePortGroup(ctx context.Context, cv *snap, pg *pgPlan) {
	if pg.skip {
		return
	}
	if pg.uplink != nil && pg.uplink.err != nil {
		pg.err = errors.Join(pg.err, fmt.Errorf("port group %s: VLAN %d: %w", pg, pg.pg.VLAN, pg.uplink.err))
	}
	if t := pg.sw.tunnel; t != nil && t.err != nil && pg.pg.VNI != 0 {
		pg.err = errors.Join(pg.err, fmt.Errorf("port group %s: VXLAN tunnels: %w", pg, t.err))
	}
	ext := map[string]string{extOwner: Name, extPortGroup: pg.pg.ID, extSwitch: pg.sw.sw.ID}
	// Secure: a bridge that has lost its flows (ovs-vswitchd restarted)
	// forwards nothing until Converge puts its policies back, rather
	// than forwarding without them.
	if err := b.ensureBridge(ctx, cv, pg.bridge, ext, "secure", nil, pg.mtu, netconf.PortGroupAlias(pg.sw.sw, pg.pg)); err != nil {
		pg.err, pg.skip = errors.Join(pg.err, fmt.Errorf("port group %s: %w", pg, err)), true
		return
	}
	for _, name := range slices.Sorted(mapKeys(pg.tunnels)) {
		peer := pg.tunnels[name]
		err := b.ensurePort(ctx, cv, wantPort{
			name: name, bridge: pg.bridge, role: "tunnel", typ: "vxlan",
			options: map[string]string{
				"remote_ip": peer.String(), "local_ip": pg.sw.sw.LocalIP.Unmap().String(),
				"key": strconv.Itoa(pg.pg.VNI), "dst_port": strconv.Itoa(netconf.VXLANPort),
			},
			ext: map[string]string{extPortGroup: pg.pg.ID, extPeer: peer.String()},
			// Head-end replication: what comes from one host goes to
			// the local ports only, never on to another host (with three
			// hosts or more, a broadcast would loop for ever).
			protected: true,
		})
		if err != nil {
			pg.err = errors.Join(pg.err, fmt.Errorf("port group %s: tunnel to %s: %w", pg, peer, err))
		}
	}
	if pg.uplink != nil && pg.uplink.err == nil {
		pgEnd, upEnd := PatchNames(pg.pg.ID)
		ext := map[string]string{extPortGroup: pg.pg.ID}
		err := b.ensurePort(ctx, cv, wantPort{name: pgEnd, bridge: pg.bridge, role: "patch", typ: "patch",
			options: map[string]string{"peer": upEnd}, ext: ext})
		if err == nil {
			err = b.ensurePort(ctx, cv, wantPort{name: upEnd, bridge: pg.uplink.bridge, role: "patch", typ: "patch",
				tag: pg.pg.VLAN, options: map[string]string{"peer": pgEnd}, ext: ext})
		}
		if err != nil {
			pg.err = errors.Join(pg.err, fmt.Errorf("port group %s: trunk to %s: %w", pg, pg.uplink, err))
		}
	}
}

// removeLeftovers removes what the backend made that the plan does not
// want: OVS ports (then bridges, giving an uplink bridge's addresses
// back first) and kernel devices with the backend's alias.
func (b *Backend) removeLeftovers(ctx context.Context, cv *snap, p *plan) error {
	var errs []error
	doomed := b.doomedBridges(cv, p)
	for _, name := range slices.Sorted(mapKeys(cv.db.ports)) {
		port := cv.db.ports[name]
		if !port.owned() || p.bridges[port.bridge] && p.ovsPorts[name] != "" || doomed[port.bridge] {
			continue // doomed: goes with its bridge, after the bridge gave back what it took
		}
		if err := b.delPort(ctx, cv, name); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range slices.Sorted(mapKeys(doomed)) {
		br := cv.db.bridges[name]
		if err := b.restoreAddrs(ctx, cv, name); err != nil {
			errs = append(errs, fmt.Errorf("remove OVS bridge %s: %w", name, err))
			continue
		}
		if _, err := b.c.vsctl(ctx, "--if-exists", "del-br", name); err != nil {
			errs = append(errs, fmt.Errorf("remove OVS bridge %s: %w", name, err))
			continue
		}
		b.log.Info("removed OVS bridge", "bridge", name, "portgroup", br.ext[extPortGroup], "uplinks", br.ext[extUplinks])
		_ = os.Remove(b.flowsFile(name))
	}
	if err := b.rereadDB(ctx, cv); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := b.readLinks(cv); err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, name := range slices.Sorted(mapKeys(cv.links)) {
		l := cv.links[name]
		if !ownedLink(l) || p.taps[name] || p.bridges[name] || cv.db.bridges[name] != nil || cv.db.ports[name] != nil {
			continue
		}
		if err := b.h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("remove leftover %s %s (%s): %w", l.Type(), name, l.Attrs().Alias, err))
			continue
		}
		b.log.Info("removed leftover device", "device", name, "kind", l.Type(), "alias", l.Attrs().Alias)
		delete(cv.links, name)
	}
	return errors.Join(errs...)
}

// doomedBridges are the bridges of the backend that the plan does not
// want. One that holds a port vdc did not make stays, for that port's
// sake (and says so), emptied of vdc's ports.
func (b *Backend) doomedBridges(cv *snap, p *plan) map[string]bool {
	doomed := map[string]bool{}
	for name, br := range cv.db.bridges {
		if !br.owned() || p.bridges[name] {
			continue
		}
		var foreign []string
		for _, port := range br.ports {
			if pt := cv.db.ports[port]; port != name && pt != nil && !pt.owned() {
				foreign = append(foreign, port)
			}
		}
		if len(foreign) > 0 {
			b.log.Warn("keeping an OVS bridge vdc no longer wants: it holds ports vdc did not make", "bridge", name, "ports", foreign)
			continue
		}
		doomed[name] = true
	}
	return doomed
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
