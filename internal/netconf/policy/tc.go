package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
)

// tc is one Converge's view of a namespace's links and qdiscs.
type tc struct {
	h      *netlink.Handle
	log    *slog.Logger
	links  map[string]netlink.Link
	byIdx  map[int]netlink.Link
	root   map[int]netlink.Qdisc // root qdisc by link index
	ingres map[int]bool          // links with an ingress qdisc
}

func newTC(log *slog.Logger, ns netns.NsHandle) (*tc, error) {
	var h *netlink.Handle
	var err error
	if ns > 0 {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink: %w", err)
	}
	t := &tc{h: h, log: log}
	if err := t.load(); err != nil {
		h.Close()
		return nil, err
	}
	return t, nil
}

// load reads links and qdiscs, retrying dumps the kernel interrupted.
func (t *tc) load() error {
	links, err := retryDump(t.h.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	qdiscs, err := retryDump(func() ([]netlink.Qdisc, error) { return t.h.QdiscList(nil) })
	if err != nil {
		return fmt.Errorf("list qdiscs: %w", err)
	}
	t.links, t.byIdx = map[string]netlink.Link{}, map[int]netlink.Link{}
	for _, l := range links {
		t.links[l.Attrs().Name] = l
		t.byIdx[l.Attrs().Index] = l
	}
	t.root, t.ingres = map[int]netlink.Qdisc{}, map[int]bool{}
	for _, q := range qdiscs {
		a := q.Attrs()
		switch a.Parent {
		case netlink.HANDLE_ROOT:
			t.root[a.LinkIndex] = q
		case netlink.HANDLE_INGRESS:
			t.ingres[a.LinkIndex] = true
		}
	}
	return nil
}

func retryDump[T any](f func() ([]T, error)) ([]T, error) {
	var err error
	for range 5 {
		var res []T
		if res, err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return res, err
		}
	}
	return nil, err
}

// applyShapes converges the qdiscs of ports, then removes what vdc set on
// links no longer listed. Redirect filters go before their ifb devices:
// a mirred action whose target vanished drops everything.
func applyShapes(ctx context.Context, log *slog.Logger, ns netns.NsHandle, ports []Port) error {
	t, err := newTC(log, ns)
	if err != nil {
		return fmt.Errorf("converge port shaping: %w", err)
	}
	defer t.h.Close()
	var errs []error
	wantIfb := map[string]bool{}
	listed := map[int]bool{}
	for _, p := range ports {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("converge port shaping: %w", err)
		}
		if !zero(p.Policy.Out) {
			wantIfb[IfbName(p.Tap)] = true
		}
		link, ok := t.links[p.Tap]
		if !ok {
			if !zero(p.Policy.In) || !zero(p.Policy.Out) {
				errs = append(errs, &PortError{Tap: p.Tap, Err: errors.New("shape: no such device")})
			}
			continue
		}
		listed[link.Attrs().Index] = true
		if err := t.portShapes(p, link); err != nil {
			errs = append(errs, &PortError{Tap: p.Tap, Err: err})
		}
	}
	if err := t.sweep(listed, wantIfb); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (t *tc) portShapes(p Port, link netlink.Link) error {
	var errs []error
	if err := t.setRoot(link, p.Policy.In); err != nil {
		errs = append(errs, fmt.Errorf("in shape: %w", err))
	}
	var err error
	if zero(p.Policy.Out) {
		err = t.removeRedirect(link)
	} else {
		err = t.setRedirect(p.Tap, link, p.Policy.Out)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("out shape: %w", err))
	}
	return errors.Join(errs...)
}

func ours(q netlink.Qdisc) bool {
	return q != nil && q.Attrs().Handle == netlink.MakeHandle(qdiscMajor, 0) && q.Type() == "tbf"
}

// setRoot sets, changes in place or removes (zero shape) the tbf vdc keeps
// at link's root.
func (t *tc) setRoot(link netlink.Link, s netconf.Shape) error {
	name, have := link.Attrs().Name, t.root[link.Attrs().Index]
	if zero(s) {
		if !ours(have) {
			return nil
		}
		if err := t.h.QdiscDel(have); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove tbf of %s: %w", name, err)
		}
		t.log.Info("shaping removed", "dev", name)
		return nil
	}
	want := tbfFor(link.Attrs().Index, s, link.Attrs().MTU)
	if have != nil && sameTbf(have, want) {
		t.log.Debug("shaping unchanged", "dev", name, "rate", want.Rate*8)
		return nil
	}
	if err := t.h.QdiscReplace(want); err != nil {
		return fmt.Errorf("set tbf of %s to %d bit/s: %w", name, want.Rate*8, err)
	}
	t.root[link.Attrs().Index] = want
	t.log.Info("shaping set", "dev", name, "rate", want.Rate*8, "peak", want.Peakrate*8, "limit", want.Limit)
	return nil
}

// setRedirect shapes what tap receives from its VM: a tbf on the tap's
// ifb, and a filter on the tap's ingress that sends every frame there.
func (t *tc) setRedirect(tap string, link netlink.Link, s netconf.Shape) error {
	ifb, err := t.ensureIfb(tap, link.Attrs().MTU)
	if err != nil {
		return err
	}
	if err := t.setRoot(ifb, s); err != nil {
		return err
	}
	idx := link.Attrs().Index
	if !t.ingres[idx] {
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS,
		}}
		if err := t.h.QdiscAdd(q); err != nil {
			return fmt.Errorf("add ingress qdisc to %s: %w", tap, err)
		}
		t.ingres[idx] = true
	}
	mine, err := t.redirects(link)
	if err != nil {
		return err
	}
	if len(mine) == 1 && mine[0].RedirIndex == ifb.Attrs().Index {
		return nil
	}
	if len(mine) > 0 {
		if err := t.delFilters(link); err != nil {
			return err
		}
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: idx,
			Parent:    netlink.MakeHandle(0xffff, 0),
			Priority:  filterPrio,
			Protocol:  unix.ETH_P_ALL,
		},
		Actions: []netlink.Action{netlink.NewMirredAction(ifb.Attrs().Index)},
	}
	if err := t.h.FilterAdd(f); err != nil {
		return fmt.Errorf("redirect ingress of %s to %s: %w", tap, ifb.Attrs().Name, err)
	}
	t.log.Info("ingress redirected for shaping", "dev", tap, "ifb", ifb.Attrs().Name)
	return nil
}

// redirects lists vdc's filters on link's ingress.
func (t *tc) redirects(link netlink.Link) ([]*netlink.U32, error) {
	fs, err := retryDump(func() ([]netlink.Filter, error) {
		return t.h.FilterList(link, netlink.MakeHandle(0xffff, 0))
	})
	if err != nil {
		return nil, fmt.Errorf("list ingress filters of %s: %w", link.Attrs().Name, err)
	}
	var mine []*netlink.U32
	for _, f := range fs {
		if u, ok := f.(*netlink.U32); ok && u.Priority == filterPrio {
			mine = append(mine, u)
		}
	}
	return mine, nil
}

// delFilters deletes every filter at vdc's priority on link's ingress.
func (t *tc) delFilters(link netlink.Link) error {
	f := &netlink.U32{FilterAttrs: netlink.FilterAttrs{
		LinkIndex: link.Attrs().Index,
		Parent:    netlink.MakeHandle(0xffff, 0),
		Priority:  filterPrio,
		Protocol:  unix.ETH_P_ALL,
	}}
	if err := t.h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove ingress redirect of %s: %w", link.Attrs().Name, err)
	}
	return nil
}

// removeRedirect undoes setRedirect on link, but for the ifb (sweep
// removes it): vdc's filter, and the ingress qdisc once no filter is left.
func (t *tc) removeRedirect(link netlink.Link) error {
	idx, name := link.Attrs().Index, link.Attrs().Name
	if !t.ingres[idx] {
		return nil
	}
	mine, err := t.redirects(link)
	if err != nil || len(mine) == 0 {
		return err
	}
	if err := t.delFilters(link); err != nil {
		return err
	}
	t.log.Info("ingress redirect removed", "dev", name)
	rest, err := retryDump(func() ([]netlink.Filter, error) {
		return t.h.FilterList(link, netlink.MakeHandle(0xffff, 0))
	})
	if err != nil {
		return fmt.Errorf("list ingress filters of %s: %w", name, err)
	}
	if len(rest) > 0 {
		return nil
	}
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: idx, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_INGRESS,
	}}
	if err := t.h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("remove ingress qdisc of %s: %w", name, err)
	}
	delete(t.ingres, idx)
	return nil
}

// ensureIfb returns tap's ifb device, made (up, with the tap's MTU, aliased
// after it) when missing.
func (t *tc) ensureIfb(tap string, mtu int) (netlink.Link, error) {
	name := IfbName(tap)
	alias := "vdc: shapes traffic from " + tap
	l, ok := t.links[name]
	if ok && l.Type() != "ifb" {
		return nil, fmt.Errorf("device %s exists and is a %s, not an ifb", name, l.Type())
	}
	if !ok {
		add := &netlink.Ifb{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, TxQLen: 1000}}
		if err := t.h.LinkAdd(add); err != nil {
			return nil, fmt.Errorf("add ifb %s: %w", name, err)
		}
		var err error
		if l, err = t.h.LinkByName(name); err != nil {
			return nil, fmt.Errorf("find ifb %s after adding it: %w", name, err)
		}
		t.links[name], t.byIdx[l.Attrs().Index] = l, l
		t.log.Info("ifb added", "dev", name, "for", tap)
	}
	a := l.Attrs()
	if a.Alias != alias {
		if err := t.h.LinkSetAlias(l, alias); err != nil {
			return nil, fmt.Errorf("set alias of ifb %s: %w", name, err)
		}
	}
	if a.MTU != mtu {
		if err := t.h.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set MTU of ifb %s to %d: %w", name, mtu, err)
		}
		a.MTU = mtu
	}
	if a.Flags&net.FlagUp == 0 {
		if err := t.h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set ifb %s up: %w", name, err)
		}
	}
	return l, nil
}

// sweep removes what vdc set on links that are not listed ports: root tbfs,
// ingress redirects, then ifb devices no port needs.
func (t *tc) sweep(listed map[int]bool, wantIfb map[string]bool) error {
	var errs []error
	for idx, l := range t.byIdx {
		if listed[idx] || wantIfb[l.Attrs().Name] {
			continue
		}
		if ours(t.root[idx]) && !isIfb(l) {
			errs = append(errs, t.setRoot(l, netconf.Shape{}))
		}
		errs = append(errs, t.removeRedirect(l))
	}
	for name, l := range t.links {
		if !isIfb(l) || wantIfb[name] {
			continue
		}
		if err := t.h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove ifb %s: %w", name, err))
			continue
		}
		t.log.Info("ifb removed", "dev", name, "alias", l.Attrs().Alias)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove shaping of unlisted devices: %w", err)
	}
	return nil
}

func isIfb(l netlink.Link) bool {
	return l.Type() == "ifb" && strings.HasPrefix(l.Attrs().Name, IfbPrefix)
}
