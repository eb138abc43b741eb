package ovs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// convergeUplink makes the uplink bridge: its uplink port (a bond of
// several, active-backup in their order), its internal port taking only
// untagged frames (the host's own traffic), and, where u.move says, the
// uplinks' addresses and routes on that internal port.
func (b *Backend) convergeUplink(ctx context.Context, cv *snap, u *uplinkPlan) {
	ext := map[string]string{extOwner: Name, extUplinks: strings.Join(u.devs, ",")}
	mac := u.links[0].Attrs().HardwareAddr.String()
	// The internal port wears the first uplink's MAC, so that neighbours
	// that know the host's address keep reaching it once it moves there.
	err := b.ensureBridge(ctx, cv, u.bridge, ext, "standalone", map[string]string{"hwaddr": mac}, u.mtu,
		"uplink "+strings.Join(u.devs, ", "))
	if err == nil {
		err = b.ensureUplinkPort(ctx, cv, u)
	}
	if err == nil {
		err = b.ensurePort(ctx, cv, wantPort{name: u.bridge, bridge: u.bridge, typ: "internal", trunks: []int{0}})
	}
	if err == nil {
		if u.move {
			err = b.moveAddrs(ctx, cv, u)
		} else {
			err = b.restoreAddrs(ctx, cv, u.bridge)
		}
	}
	if err != nil {
		u.err = fmt.Errorf("%s of switch %s: %w", u, strings.Join(u.switches, ", "), err)
	}
}

func (b *Backend) ensureUplinkPort(ctx context.Context, cv *snap, u *uplinkPlan) error {
	if len(u.devs) == 1 {
		return b.ensurePort(ctx, cv, wantPort{name: u.devs[0], bridge: u.bridge, role: "uplink"})
	}
	return b.ensurePort(ctx, cv, wantPort{
		name: bondName(u.bridge), bridge: u.bridge, role: "uplink", bond: u.devs,
		other: map[string]string{"bond-primary": u.devs[0]},
	})
}

// moved is what an uplink bridge took from its uplinks, recorded in its
// external IDs before it is taken, so that a later Converge (another
// agent's, after a crash) gives it back.
type moved struct {
	Addrs  []movedAddr  `json:"addrs"`
	Routes []movedRoute `json:"routes,omitempty"`
}

type movedAddr struct {
	Dev    string `json:"dev"`
	Prefix string `json:"prefix"`
}

type movedRoute struct {
	Dev    string `json:"dev"`
	Dst    string `json:"dst"` // "" for a default route
	Gw     string `json:"gw,omitempty"`
	Src    string `json:"src,omitempty"`
	Metric int    `json:"metric,omitempty"`
	Family int    `json:"family"`
}

// moveAddrs moves the uplinks' global addresses, and the routes through
// them, to the bridge's internal port, and sets that port up.
func (b *Backend) moveAddrs(ctx context.Context, cv *snap, u *uplinkPlan) error {
	br := cv.links[u.bridge]
	if br == nil {
		return fmt.Errorf("internal port %s of %s: no such device", u.bridge, u)
	}
	rec := recordedMoves(cv.db.bridges[u.bridge])
	var take moved
	for _, l := range u.links {
		addrs, routes, err := b.movable(l)
		if err != nil {
			return err
		}
		take.Addrs = append(take.Addrs, addrs...)
		take.Routes = append(take.Routes, routes...)
	}
	if len(take.Addrs)+len(take.Routes) > 0 {
		rec.Addrs = append(rec.Addrs, take.Addrs...)
		rec.Routes = append(rec.Routes, take.Routes...)
		js, _ := json.Marshal(rec)
		if _, err := b.c.vsctl(ctx, "set", "Bridge", u.bridge, "external_ids:"+extMoved+"="+quote(string(js))); err != nil {
			return fmt.Errorf("record the addresses to move to %s: %w", u.bridge, err)
		}
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		if err := b.h.LinkSetUp(br); err != nil {
			return fmt.Errorf("set internal port %s up: %w", u.bridge, err)
		}
		b.log.Info("set internal port up", "device", u.bridge)
	}
	// Addresses first (the routes' gateways stay reachable), then routes,
	// then the uplinks lose theirs.
	for _, a := range rec.Addrs {
		if err := b.addAddr(br, a.Prefix); err != nil {
			return fmt.Errorf("move address %s from %s to %s: %w", a.Prefix, a.Dev, u.bridge, err)
		}
	}
	for _, r := range take.Routes {
		if err := b.h.RouteDel(r.route(cv.links[r.Dev])); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("move route %s from %s to %s: %w", r, r.Dev, u.bridge, err)
		}
		if err := b.h.RouteReplace(r.route(br)); err != nil {
			return fmt.Errorf("move route %s from %s to %s: %w", r, r.Dev, u.bridge, err)
		}
		b.log.Info("moved route", "route", r.String(), "from", r.Dev, "to", u.bridge)
	}
	for _, a := range take.Addrs {
		if err := b.delAddr(cv.links[a.Dev], a.Prefix); err != nil {
			return fmt.Errorf("move address %s from %s to %s: %w", a.Prefix, a.Dev, u.bridge, err)
		}
		b.log.Info("moved address", "address", a.Prefix, "from", a.Dev, "to", u.bridge)
	}
	if len(take.Addrs)+len(take.Routes) > 0 {
		return b.readLinks(cv)
	}
	return nil
}

// movable are l's addresses and routes that move: global addresses
// (link-local ones belong to the link) and routes of the main table
// through l that the kernel did not make for an address.
func (b *Backend) movable(l netlink.Link) ([]movedAddr, []movedRoute, error) {
	name := l.Attrs().Name
	addrs, err := b.h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, nil, fmt.Errorf("list the addresses of %s: %w", name, err)
	}
	var out []movedAddr
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() || a.Scope == unix.RT_SCOPE_LINK || a.Scope == unix.RT_SCOPE_HOST {
			continue
		}
		out = append(out, movedAddr{Dev: name, Prefix: a.IPNet.String()})
	}
	routes, err := b.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, nil, fmt.Errorf("list the routes through %s: %w", name, err)
	}
	var rs []movedRoute
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL || r.Type != unix.RTN_UNICAST || (r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast()) {
			continue
		}
		mr := movedRoute{Dev: name, Metric: r.Priority, Family: r.Family}
		if r.Dst != nil {
			mr.Dst = r.Dst.String()
		}
		if r.Gw != nil {
			mr.Gw = r.Gw.String()
		}
		if r.Src != nil {
			mr.Src = r.Src.String()
		}
		rs = append(rs, mr)
	}
	return out, rs, nil
}

func (r movedRoute) String() string {
	s := r.Dst
	if s == "" {
		s = "default"
	}
	if r.Gw != "" {
		s += " via " + r.Gw
	}
	if r.Metric != 0 {
		s += " metric " + strconv.Itoa(r.Metric)
	}
	return s
}

func (r movedRoute) route(dev netlink.Link) *netlink.Route {
	rt := &netlink.Route{Priority: r.Metric, Family: r.Family, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC}
	if dev != nil {
		rt.LinkIndex = dev.Attrs().Index
	}
	if r.Dst != "" {
		_, rt.Dst, _ = net.ParseCIDR(r.Dst)
	}
	rt.Gw = net.ParseIP(r.Gw)
	rt.Src = net.ParseIP(r.Src)
	return rt
}

func (b *Backend) addAddr(l netlink.Link, prefix string) error {
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		return err
	}
	if a.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD // the host had it already: no duplicate detection wait
	}
	if err := b.h.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

func (b *Backend) delAddr(l netlink.Link, prefix string) error {
	if l == nil {
		return nil
	}
	a, err := netlink.ParseAddr(prefix)
	if err != nil {
		return err
	}
	if err := b.h.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENODEV) {
		return err
	}
	return nil
}

func recordedMoves(br *dbBridge) moved {
	var m moved
	if br != nil && br.ext[extMoved] != "" {
		_ = json.Unmarshal([]byte(br.ext[extMoved]), &m)
	}
	return m
}

// restoreAddrs gives the uplinks back the addresses and routes the
// bridge took, and forgets them.
func (b *Backend) restoreAddrs(ctx context.Context, cv *snap, bridge string) error {
	br := cv.db.bridges[bridge]
	rec := recordedMoves(br)
	if len(rec.Addrs)+len(rec.Routes) == 0 {
		if br != nil && br.ext[extMoved] != "" {
			_, err := b.c.vsctl(ctx, "remove", "Bridge", bridge, "external_ids", extMoved)
			return err
		}
		return nil
	}
	internal := cv.links[bridge]
	var errs []error
	for _, a := range rec.Addrs {
		if l := cv.links[a.Dev]; l == nil {
			errs = append(errs, fmt.Errorf("give address %s back to %s: no such device", a.Prefix, a.Dev))
		} else if err := b.addAddr(l, a.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("give address %s back to %s: %w", a.Prefix, a.Dev, err))
		} else {
			b.log.Info("gave address back", "address", a.Prefix, "to", a.Dev, "from", bridge)
		}
	}
	for _, r := range rec.Routes {
		if internal != nil {
			_ = b.h.RouteDel(r.route(internal))
		}
		if err := b.h.RouteReplace(r.route(cv.links[r.Dev])); err != nil {
			errs = append(errs, fmt.Errorf("give route %s back to %s: %w", r, r.Dev, err))
		} else {
			b.log.Info("gave route back", "route", r.String(), "to", r.Dev, "from", bridge)
		}
	}
	for _, a := range rec.Addrs {
		if err := b.delAddr(internal, a.Prefix); err != nil {
			errs = append(errs, fmt.Errorf("remove address %s from %s: %w", a.Prefix, bridge, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if br != nil {
		if _, err := b.c.vsctl(ctx, "remove", "Bridge", bridge, "external_ids", extMoved); err != nil {
			return fmt.Errorf("forget the moved addresses of %s: %w", bridge, err)
		}
	}
	return b.readLinks(cv)
}
