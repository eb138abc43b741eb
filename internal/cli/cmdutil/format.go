package cmdutil

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
)

// ShortDuration prints d with one or two units: "850ms", "4.2s", "42s",
// "5m3s", "17m", "3h5m", "4d".
func ShortDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d == 0:
		return "0s"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < 10*time.Second && d%time.Second != 0:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 10*time.Minute && d%time.Minute >= time.Second:
		m := int(d.Minutes())
		return fmt.Sprintf("%dm%ds", m, int(d.Seconds())-60*m)
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		h, m := int(d.Hours()), int(d.Minutes())%60
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%dm", h, m)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// Age says how long ago t was, to the second: "3s ago". A zero time (never)
// is empty.
func Age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t).Truncate(time.Second)
	return ShortDuration(d) + " ago"
}

// TimeAndAge prints an absolute time for info views, with its age.
func TimeAndAge(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 MST") + " (" + Age(now, t) + ")"
}

// SizeOrEmpty leaves an unknown (zero) size blank rather than "0 B", which
// would read as a full datastore.
func SizeOrEmpty(s api.Size) string {
	if s == 0 {
		return ""
	}
	return s.String()
}

// UsedOf prints "used/total" for capacity columns.
func UsedOf[N int | api.Size](used, total N) string {
	return fmt.Sprint(used) + "/" + fmt.Sprint(total)
}

// labelString prints labels sorted, "k=v,k2=v2".
func labelString(l map[string]string) string {
	keys := slices.Sorted(maps.Keys(l))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + l[k]
	}
	return strings.Join(parts, ",")
}

// Truncate shortens s to n runes for a table cell.
func Truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// kindNames are the singular nouns of the kinds, for messages.
var kindNames = map[string]string{
	api.KindDatacenter: "datacenter", api.KindCluster: "cluster", api.KindHost: "host",
	api.KindDatastore: "datastore", api.KindPortGroup: "port group", api.KindVM: "vm", api.KindTask: "task", api.KindFolder: "folder",
}

// KindName is the singular noun of a kind (api.KindPortGroup: "port group"),
// for messages.
func KindName(kind string) string {
	if n, ok := kindNames[kind]; ok {
		return n
	}
	return kind
}

// Refs prints references by name.
func Refs(rs []api.Ref) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.String()
	}
	return strings.Join(names, ", ")
}

// HostDriver is a host's driver with its acceleration: "qemu (kvm)".
func HostDriver(h *api.Host) string {
	s := h.Status.Driver
	if a := h.Status.Accel; a != "" && a != s {
		s += " (" + a + ")"
	}
	return s
}

// HostAccel says how a host runs VMs: "qemu under TCG (software
// emulation; KVM not used: open /dev/kvm: no such file or directory)".
func HostAccel(h *api.Host) string {
	st := h.Status
	switch {
	case st.Driver == "sim":
		return "sim (simulated VMs)"
	case st.Accel == "kvm":
		return st.Driver + " under KVM"
	case st.Accel == "tcg":
		s := st.Driver + " under TCG (software emulation"
		if st.AccelReason != "" {
			s += "; KVM not used: " + st.AccelReason
		}
		return s + ")"
	}
	return HostDriver(h)
}
