package cmdutil

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"github.com/vdc-project/vdc/api"
)

// WriteJSON prints v indented, as the API sent it.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Column is one column of a list table. Its cells are made safe to print.
type Column[T any] struct {
	Header string // in capitals in the table: "name" is NAME
	Value  func(T) string
	// Optional columns appear only when some row has a value, so that a
	// rarely set one (a VM's status message) does not widen every table.
	Optional bool
}

// PrintList prints items as a table, or as a JSON array with -o json.
func PrintList[T any](g *Globals, items []T, cols []Column[T]) error {
	if g.JSONOutput() {
		if items == nil {
			items = []T{} // [] rather than null: scripts iterate over it
		}
		return WriteJSON(g.Stdout, items)
	}
	return writeTable(g.Stdout, items, cols)
}

// writeTable prints a header row in capitals and one aligned row per item.
func writeTable[T any](w io.Writer, items []T, cols []Column[T]) error {
	cells := make([][]string, len(items))
	filled := make([]bool, len(cols))
	for i, it := range items {
		cells[i] = make([]string, len(cols))
		for j, c := range cols {
			cells[i][j] = c.Value(it)
			filled[j] = filled[j] || cells[i][j] != ""
		}
	}
	var keep []int
	for j, c := range cols {
		if !c.Optional || filled[j] {
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
		header[j] = c.Header
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

// Safe makes text that came from the server or a guest (names,
// descriptions, labels, messages, errors) harmless on a terminal: control
// characters (line breaks and tabs too), DEL, C1 controls, bidi overrides
// and invisible format characters (api.UnsafeRune), and bytes that are
// not UTF-8, are written as Go escapes (\x1b, \n, \u202e), so that an
// escape sequence stored by an older server or sent by a hostile one is
// shown, not run. Everything else, any script included, prints as it is.
// -o json needs none of this (JSON escapes them); vm exec and vm console
// pass the guest's bytes through on purpose (they are its terminal).
func Safe(s string) string {
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

// SafeText is Safe for text of several lines (an error, a license
// agreement): the line breaks and tabs stay, the rest is made safe.
func SafeText(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		cells := strings.Split(l, "\t")
		for j, c := range cells {
			cells[j] = Safe(c)
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
	return Safe(strings.Join(strings.Fields(s), " "))
}

// InfoView is the text form of one object: aligned "Key: value" lines, then
// sub-tables (a VM's disks and NICs). Its text is made safe to print.
type InfoView struct {
	fields   [][2]string
	sections []infoSection
}

type infoSection struct {
	title  string
	header []string
	rows   [][]string
}

// Add adds a "Key: value" line; an empty value shows as "-".
func (v *InfoView) Add(key, value string) { v.fields = append(v.fields, [2]string{key, value}) }

// Table adds a sub-table under the lines, "(none)" when it has no rows.
func (v *InfoView) Table(title string, header []string, rows [][]string) {
	v.sections = append(v.sections, infoSection{title, header, rows})
}

func (v *InfoView) write(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, f := range v.fields {
		val := f[1]
		if strings.TrimSpace(val) == "" {
			val = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", Safe(f[0]), Safe(val))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range v.sections {
		fmt.Fprintf(w, "%s:\n", Safe(s.title))
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

// PrintInfo prints one object: as JSON with -o json, else as built by fill.
func PrintInfo[T any](g *Globals, obj T, fill func(*InfoView, T)) error {
	if g.JSONOutput() {
		return WriteJSON(g.Stdout, obj)
	}
	var v InfoView
	fill(&v, obj)
	return v.write(g.Stdout)
}
