package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

type row struct{ a, b, c string }

var rowCols = []column[row]{
	{header: "name", value: func(r row) string { return r.a }},
	{header: "long header", value: func(r row) string { return r.b }},
	{header: "note", value: func(r row) string { return r.c }, optional: true},
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
	g := &globals{output: outputJSON, stdout: &out}
	if err := printList[*api.Datacenter](g, nil, nil); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "[]" {
		t.Errorf("empty list as JSON = %q, want []", out.String())
	}
	out.Reset()
	dcs := []*api.Datacenter{{Metadata: api.ObjectMeta{Name: "dc1"}}, {Metadata: api.ObjectMeta{Name: "dc2"}}}
	if err := printList(g, dcs, nil); err != nil {
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
	for _, o := range []string{outputTable, outputJSON} {
		if err := (&globals{output: o}).checkOutput(); err != nil {
			t.Errorf("-o %s: %v", o, err)
		}
	}
	for _, o := range []string{"yaml", "", "JSON", "wide"} {
		err := (&globals{output: o}).checkOutput()
		if err == nil || !strings.Contains(err.Error(), "use -o table or -o json") {
			t.Errorf("-o %q: error = %v, want a clear refusal", o, err)
		}
	}
}

func TestInfoView(t *testing.T) {
	var v infoView
	v.add("Name", "web1")
	v.add("Description", "")
	v.table("Disks", []string{"name", "size"}, [][]string{{"disk0", "10 GiB"}})
	v.table("NICs", []string{"name"}, nil)
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
		if got := shortDuration(c.d); got != c.want {
			t.Errorf("shortDuration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	if got := age(now, now.Add(-3500*time.Millisecond)); got != "3s ago" {
		t.Errorf("age 3.5s = %q, want 3s ago (whole seconds)", got)
	}
	if got := age(now, now.Add(-5*time.Minute)); got != "5m ago" {
		t.Errorf("age 5m = %q", got)
	}
	if got := age(now, time.Time{}); got != "" {
		t.Errorf("age of the zero time = %q, want empty", got)
	}
}

func TestFormatHelpers(t *testing.T) {
	if got := usedOf(api.Size(2<<30), api.Size(16<<30)); got != "2 GiB/16 GiB" {
		t.Errorf("usedOf sizes = %q", got)
	}
	if got := usedOf(3, 8); got != "3/8" {
		t.Errorf("usedOf ints = %q", got)
	}
	if got := labelString(map[string]string{"z": "1", "a": "2"}); got != "a=2,z=1" {
		t.Errorf("labelString = %q, want sorted", got)
	}
	if got := truncate("abcdef", 4); got != "abc…" {
		t.Errorf("truncate = %q", got)
	}
	if got := truncate("abc", 4); got != "abc" {
		t.Errorf("truncate of a short string = %q", got)
	}
	if got := sizeOrEmpty(0); got != "" {
		t.Errorf("sizeOrEmpty(0) = %q", got)
	}
	if got := kindName(api.KindPortGroup); got != "port group" {
		t.Errorf("kindName = %q", got)
	}
}
