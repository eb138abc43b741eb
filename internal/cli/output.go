package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/vdc-project/vdc/api"
)

// Values of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// checkOutput rejects an unknown -o before a command does any work, so a
// typo never half-runs a command.
func (g *globals) checkOutput() error {
	switch g.output {
	case outputTable, outputJSON:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o table or -o json", g.output)
}

func (g *globals) jsonOutput() bool { return g.output == outputJSON }

// writeJSON prints v indented, as the API sent it.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// column is one column of a list table.
type column[T any] struct {
	header string
	value  func(T) string
	// optional columns appear only when some row has a value, so that a
	// rarely set one (a VM's status message) does not widen every table.
	optional bool
}

// printList prints items as a table, or as a JSON array with -o json.
func printList[T any](g *globals, items []T, cols []column[T]) error {
	if g.jsonOutput() {
		if items == nil {
			items = []T{} // [] rather than null: scripts iterate over it
		}
		return writeJSON(g.stdout, items)
	}
	return writeTable(g.stdout, items, cols)
}

// writeTable prints a header row in capitals and one aligned row per item.
func writeTable[T any](w io.Writer, items []T, cols []column[T]) error {
	cells := make([][]string, len(items))
	filled := make([]bool, len(cols))
	for i, it := range items {
		cells[i] = make([]string, len(cols))
		for j, c := range cols {
			cells[i][j] = c.value(it)
			filled[j] = filled[j] || cells[i][j] != ""
		}
	}
	var keep []int
	for j, c := range cols {
		if !c.optional || filled[j] {
			keep = append(keep, j)
		}
	}
	pick := func(row []string) []string {
		out := make([]string, len(keep))
		for k, j := range keep {
			out[k] = row[j]
		}
		return out
	}
	header := make([]string, len(cols))
	for j, c := range cols {
		header[j] = c.header
	}
	rows := make([][]string, len(cells))
	for i := range cells {
		rows[i] = pick(cells[i])
	}
	return writeRows(w, "", pick(header), rows)
}

// writeRows aligns rows under a header, each line prefixed by indent.
func writeRows(w io.Writer, indent string, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(cells []string, upper bool) {
		out := make([]string, len(cells))
		for i, c := range cells {
			c = cell(c)
			if upper {
				c = strings.ToUpper(c)
			}
			out[i] = c
		}
		// No tab after the last cell: tabwriter would pad it with trailing blanks.
		fmt.Fprintln(tw, indent+strings.Join(out, "\t"))
	}
	line(header, true)
	for _, r := range rows {
		line(r, false)
	}
	return tw.Flush()
}

// safe makes text that came from the server or a guest (names,
// descriptions, labels, messages, errors) harmless on a terminal: control
// characters (line breaks and tabs too), DEL, C1 controls, bidi overrides
// and invisible format characters (api.UnsafeRune), and bytes that are
// not UTF-8, are written as Go escapes (\x1b, \n, \u202e), so that an
// escape sequence stored by an older server or sent by a hostile one is
// shown, not run. Everything else, any script included, prints as it is.
// -o json needs none of this (JSON escapes them); vm exec and vm console
// pass the guest's bytes through on purpose (they are its terminal).
func safe(s string) string {
	clean := true
	for i, r := range s {
		if api.UnsafeRune(r) || r == utf8.RuneError && invalidAt(s, i) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && invalidAt(s, i):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case api.UnsafeRune(r):
			q := strconv.QuoteRuneToASCII(r) // '\x1b', '\n', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// safeText is safe for text of several lines (an error, a license
// agreement): the line breaks and tabs stay, the rest is made safe.
func safeText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		cells := strings.Split(l, "\t")
		for j, c := range cells {
			cells[j] = safe(c)
		}
		lines[i] = strings.Join(cells, "\t")
	}
	return strings.Join(lines, "\n")
}

func invalidAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 1
}

// cell keeps one value on one table line and marks an empty one, so that
// columns stay countable for awk and cut; it is made safe to print.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return safe(strings.Join(strings.Fields(s), " "))
}

// infoView is the text form of one object: aligned "Key: value" lines, then
// sub-tables (a VM's disks and NICs).
type infoView struct {
	fields   [][2]string
	sections []infoSection
}

type infoSection struct {
	title  string
	header []string
	rows   [][]string
}

func (v *infoView) add(key, value string) { v.fields = append(v.fields, [2]string{key, value}) }

func (v *infoView) table(title string, header []string, rows [][]string) {
	v.sections = append(v.sections, infoSection{title, header, rows})
}

func (v *infoView) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range v.fields {
		val := f[1]
		if strings.TrimSpace(val) == "" {
			val = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", safe(f[0]), safe(val))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range v.sections {
		fmt.Fprintf(w, "%s:\n", safe(s.title))
		if len(s.rows) == 0 {
			fmt.Fprintln(w, "  (none)")
			continue
		}
		if err := writeRows(w, "  ", s.header, s.rows); err != nil {
			return err
		}
	}
	return nil
}

// printInfo prints one object: as JSON with -o json, else as built by fill.
func printInfo[T any](g *globals, obj T, fill func(*infoView, T)) error {
	if g.jsonOutput() {
		return writeJSON(g.stdout, obj)
	}
	var v infoView
	fill(&v, obj)
	return v.write(g.stdout)
}

// shortDuration prints d with one or two units: "850ms", "4.2s", "42s",
// "5m3s", "17m", "3h5m", "4d".
func shortDuration(d time.Duration) string {
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

// age says how long ago t was, to the second: "3s ago". A zero time (never)
// is empty.
func age(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t).Truncate(time.Second)
	return shortDuration(d) + " ago"
}

// timeAndAge prints an absolute time for info views, with its age.
func timeAndAge(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05 MST") + " (" + age(now, t) + ")"
}

// sizeOrEmpty leaves an unknown (zero) size blank rather than "0 B", which
// would read as a full datastore.
func sizeOrEmpty(s api.Size) string {
	if s == 0 {
		return ""
	}
	return s.String()
}

// usedOf prints "used/total" for capacity columns.
func usedOf[N int | api.Size](used, total N) string {
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

// truncate shortens s to n runes for a table cell.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// kindNames are the singular nouns of the kinds, for messages.
var kindNames = map[string]string{
	api.KindDatacenter: "datacenter", api.KindCluster: "cluster", api.KindHost: "host",
	api.KindDatastore: "datastore", api.KindPortGroup: "port group", api.KindVM: "vm", api.KindTask: "task",
}

func kindName(kind string) string {
	if n, ok := kindNames[kind]; ok {
		return n
	}
	return kind
}

// refs prints references by name.
func refs(rs []api.Ref) string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = r.String()
	}
	return strings.Join(names, ", ")
}
