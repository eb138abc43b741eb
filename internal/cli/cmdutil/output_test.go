package cmdutil

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

type row struct{ a, b, c string }

var rowCols = []Column[row]{
	{Header: "name", Value: func(r row) string { return r.a }},
	{Header: "long header", Value: func(r row) string { return r.b }},
	{Header: "note", Value: func(r row) string { return r.c }, Optional: true},
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := writeTable(&b, []row{{"a", "1", ""}, {"longer-name", "", ""}}, rowCols); err != nil {
		t.Fatal(err)
	}
	// Header in capitals, columns aligned, empty cells as "-", the empty
	// optional column left out, no trailing blanks.
	want := "NAME         LONG HEADER\n" +
		"a            1\n" +
		"longer-name  -\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}

	b.Reset()
	if err := writeTable(&b, []row{{"a", "1", "two\nlines\there"}, {"b", "2", ""}}, rowCols); err != nil {
		t.Fatal(err)
	}
	want = "NAME  LONG HEADER  NOTE\n" +
		"a     1            two lines here\n" +
		"b     2            -\n"
	if b.String() != want {
		t.Errorf("got:\n%q\nwant:\n%q", b.String(), want)
	}
}

func TestPrintListJSON(t *testing.T) {
	var out bytes.Buffer
	g := &Globals{Output: OutputJSON, Stdout: &out}
	if err := PrintList[*api.Datacenter](g, nil, nil); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("empty list as JSON = %q, want []", out.String())
	}
	out.Reset()
	dcs := []*api.Datacenter{{Metadata: api.ObjectMeta{Name: "dc1"}}, {Metadata: api.ObjectMeta{Name: "dc2"}}}
	if err := PrintList(g, dcs, nil); err != nil {
		t.Fatal(err)
	}
	var back []api.Datacenter
	if err := json.Unmarshal(out.Bytes(), &back); err != nil {
		t.Fatalf("not a JSON array: %v\n%s", err, out.String())
	}
	if len(back) != 2 || back[1].Metadata.Name != "dc2" {
		t.Errorf("decoded %+v", back)
	}
	if !strings.Contains(out.String(), "\n  ") {
		t.Errorf("JSON is not indented:\n%s", out.String())
	}
}

func TestCheckOutput(t *testing.T) {
	for _, o := range []string{OutputTable, OutputJSON} {
		if err := (&Globals{Output: o}).CheckOutput(); err != nil {
			t.Errorf("-o %s: %v", o, err)
		}
	}
	for _, o := range []string{"yaml", "", "JSON", "wide"} {
		err := (&Globals{Output: o}).CheckOutput()
		if err == nil || !strings.Contains(err.Error(), "use -o table or -o json") {
			t.Errorf("-o %q: error = %v, want a clear refusal", o, err)
		}
	}
}

func TestInfoView(t *testing.T) {
	var v InfoView
	v.Add("Name", "web1")
	v.Add("Description", "")
	v.Table("Disks", []string{"name", "size"}, [][]string{{"disk0", "10 GiB"}})
	v.Table("NICs", []string{"name"}, nil)
	var b bytes.Buffer
	if err := v.write(&b); err != nil {
		t.Fatal(err)
	}
	want := "Name:         web1\n" +
		"Description:  -\n" +
		"Disks:\n" +
		"  NAME   SIZE\n" +
		"  disk0  10 GiB\n" +
		"NICs:\n" +
		"  (none)\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestShortDurationAndAge(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{-time.Second, "0s"},
		{850 * time.Millisecond, "850ms"},
		{4200 * time.Millisecond, "4.2s"},
		{3 * time.Second, "3s"},
		{42 * time.Second, "42s"},
		{5*time.Minute + 3*time.Second, "5m3s"},
		{5 * time.Minute, "5m"},
		{17*time.Minute + 40*time.Second, "17m"},
		{3*time.Hour + 5*time.Minute, "3h5m"},
		{2 * time.Hour, "2h"},
		{4*24*time.Hour + time.Hour, "4d"},
	} {
		if got := ShortDuration(c.d); got != c.want {
			t.Errorf("ShortDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	if got := Age(now, now.Add(-3500*time.Millisecond)); got != "3s ago" {
		t.Errorf("age 3.5s = %q, want 3s ago (whole seconds)", got)
	}
	if got := Age(now, now.Add(-5*time.Minute)); got != "5m ago" {
		t.Errorf("age 5m = %q", got)
	}
	if got := Age(now, time.Time{}); got != "" {
		t.Errorf("age of the zero time = %q, want empty", got)
	}
}

func TestFormatHelpers(t *testing.T) {
	if got := UsedOf(api.Size(2<<30), api.Size(16<<30)); got != "2 GiB/16 GiB" {
		t.Errorf("UsedOf sizes = %q", got)
	}
	if got := UsedOf(3, 8); got != "3/8" {
		t.Errorf("UsedOf ints = %q", got)
	}
	if got := labelString(map[string]string{"z": "1", "a": "2"}); got != "a=2,z=1" {
		t.Errorf("labelString = %q, want sorted", got)
	}
	if got := Truncate("abcdef", 4); got != "abc…" {
		t.Errorf("truncate = %q", got)
	}
	if got := Truncate("abc", 4); got != "abc" {
		t.Errorf("truncate of a short string = %q", got)
	}
	if got := SizeOrEmpty(0); got != "" {
		t.Errorf("SizeOrEmpty(0) = %q", got)
	}
	if got := KindName(api.KindPortGroup); got != "port group" {
		t.Errorf("kindName = %q", got)
	}
}
