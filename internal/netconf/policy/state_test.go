package policy

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
)

// ruleset is the lab's whole nftables ruleset as text (every family,
// counters zeroed, handles left out), for comparing before and after.
func (l *lab) ruleset() string {
	l.t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.ns)))
	if err != nil {
		l.t.Fatal(err)
	}
	tables, err := c.ListTables()
	if err != nil {
		l.t.Fatalf("list nftables tables: %v", err)
	}
	chains, err := c.ListChains()
	if err != nil {
		l.t.Fatalf("list nftables chains: %v", err)
	}
	var out []string
	for _, t := range tables {
		out = append(out, fmt.Sprintf("table %d %s", t.Family, t.Name))
		sets, err := c.GetSets(t)
		if err != nil {
			l.t.Fatalf("list sets of %s: %v", t.Name, err)
		}
		for _, s := range sets {
			elems, err := c.GetSetElements(s)
			if err != nil {
				l.t.Fatalf("list elements of %s: %v", s.Name, err)
			}
			// The library reads back element keys but not verdicts: the
			// security tests check where each jump leads by sending frames.
			var es []string
			for _, e := range elems {
				es = append(es, fmt.Sprintf("%q", bytes.TrimRight(e.Key, "\x00")))
			}
			sort.Strings(es)
			out = append(out, fmt.Sprintf("  set %s map=%v {%s}", s.Name, s.IsMap, strings.Join(es, ", ")))
		}
		for _, ch := range chains {
			if ch.Table.Name != t.Name || ch.Table.Family != t.Family {
				continue
			}
			out = append(out, "  "+chainLine(ch))
			rules, err := c.GetRules(t, ch)
			if err != nil {
				l.t.Fatalf("list rules of %s: %v", ch.Name, err)
			}
			for _, r := range rules {
				out = append(out, "    "+ruleLine(r))
			}
		}
	}
	return strings.Join(out, "\n")
}

func chainLine(ch *nftables.Chain) string {
	s := "chain " + ch.Name
	if ch.Hooknum != nil {
		s += fmt.Sprintf(" hook %d", *ch.Hooknum)
	}
	if ch.Priority != nil {
		s += fmt.Sprintf(" priority %d", *ch.Priority)
	}
	if ch.Policy != nil {
		s += fmt.Sprintf(" policy %d", *ch.Policy)
	}
	return s
}

func ruleLine(r *nftables.Rule) string {
	var parts []string
	for _, e := range r.Exprs {
		if c, ok := e.(*expr.Counter); ok {
			c.Bytes, c.Packets = 0, 0
		}
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		parts = append(parts, fmt.Sprintf("%T%+v", e, v.Interface()))
	}
	return strings.Join(parts, " ") + fmt.Sprintf(" userdata=%q", r.UserData)
}

// dropped is what the counter of chain's rule in table vdc counted.
func (l *lab) dropped(chain string) uint64 {
	l.t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(int(l.ns)))
	if err != nil {
		l.t.Fatal(err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
	rules, err := c.GetRules(t, &nftables.Chain{Name: chain, Table: t})
	if err != nil {
		l.t.Fatalf("list rules of chain %s: %v", chain, err)
	}
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				return c.Packets
			}
		}
	}
	l.t.Fatalf("chain %s has no counter", chain)
	return 0
}

// tcState describes every link's qdiscs and ingress filters (with the
// ifindex of ifb devices, to show they were not made again).
func (l *lab) tcState() string {
	l.t.Helper()
	links, err := l.h.LinkList()
	if err != nil {
		l.t.Fatalf("list links: %v", err)
	}
	var out []string
	for _, link := range links {
		a := link.Attrs()
		qs, err := l.h.QdiscList(link)
		if err != nil {
			l.t.Fatalf("list qdiscs of %s: %v", a.Name, err)
		}
		var parts []string
		for _, q := range qs {
			parts = append(parts, qdiscLine(q))
		}
		fs, err := l.h.FilterList(link, netlink.MakeHandle(0xffff, 0))
		if err != nil {
			l.t.Fatalf("list filters of %s: %v", a.Name, err)
		}
		for _, f := range fs {
			if u, ok := f.(*netlink.U32); ok {
				parts = append(parts, fmt.Sprintf("u32 prio %d redirect %d", u.Priority, u.RedirIndex))
			}
		}
		out = append(out, fmt.Sprintf("%s(%d %s): %s", a.Name, a.Index, link.Type(), strings.Join(parts, "; ")))
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func qdiscLine(q netlink.Qdisc) string {
	a := q.Attrs()
	s := fmt.Sprintf("%s %s parent %s", q.Type(), netlink.HandleStr(a.Handle), netlink.HandleStr(a.Parent))
	if t, ok := q.(*netlink.Tbf); ok {
		s += fmt.Sprintf(" rate %d limit %d buffer %d peak %d", t.Rate, t.Limit, t.Buffer, t.Peakrate)
	}
	return s
}

// rootTbf is the tbf vdc keeps at dev's root, nil when there is none.
func (l *lab) rootTbf(dev string) *netlink.Tbf {
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
		if t, ok := q.(*netlink.Tbf); ok && q.Attrs().Parent == netlink.HANDLE_ROOT {
			return t
		}
	}
	return nil
}
