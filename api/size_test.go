package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	good := map[string]Size{
		"0": 0, "1024": 1024, "512MiB": 512 << 20, "10G": 10 << 30, "10GB": 10 << 30, "10GiB": 10 << 30,
		"1.5 GiB": 3 << 29, "2k": 2048, "1T": 1 << 40, "7EiB": 7 << 60,
		" 64 mib ": 64 << 20, "1b": 1,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"": "empty", "-1": "negative", "-1GiB": "negative", "abc": "want a number", "10XB": "want a number",
		"1.2.3G": "not a number", "8EiB": "too large", "100000000000000000000": "too large", "NaN": "want a number", "GiB": "want a number",
	}
	for in, msg := range bad {
		_, err := ParseSize(in)
		if err == nil || !strings.Contains(err.Error(), msg) || !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseSize(%q): want an ErrInvalid mentioning %q, got %v", in, msg, err)
		}
	}
}

func TestSizeJSONAndString(t *testing.T) {
	var v struct{ A, B Size }
	if err := json.Unmarshal([]byte(`{"A": "1GiB", "B": 2048}`), &v); err != nil || v.A != 1<<30 || v.B != 2048 {
		t.Fatalf("%+v %v", v, err)
	}
	if err := json.Unmarshal([]byte(`{"A": "lots"}`), &v); err == nil {
		t.Fatal("accepted a bad size string")
	}
	if err := json.Unmarshal([]byte(`{"A": 1.5}`), &v); err == nil {
		t.Fatal("accepted a fractional byte count")
	}
	b, _ := json.Marshal(Size(1 << 30))
	if string(b) != "1073741824" {
		t.Fatalf("marshal: %s", b)
	}
	for s, want := range map[Size]string{0: "0 B", 1023: "1023 B", 1 << 30: "1 GiB", 3 << 29: "1.5 GiB", 512 << 20: "512 MiB"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int64(s), got, want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"web1", "a", "db-01.prod", "x_y", strings.Repeat("a", 63), "1abc"} {
		if err := ValidateName("vm", ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a b", "a/b", "é", strings.Repeat("a", 64), "a;rm", "../x"} {
		if err := ValidateName("vm", bad); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("%q accepted (or wrong class): %v", bad, err)
		}
	}
}

func TestErrorsCrossTheWire(t *testing.T) {
	e, status := ErrorFrom(Errorf(ErrConflict, "vm %s is on", "a"))
	if status != 409 || e.Code != CodeConflict || e.Message != "vm a is on" {
		t.Fatalf("%+v %d", e, status)
	}
	if !errors.Is(e, ErrConflict) || errors.Is(e, ErrNotFound) {
		t.Fatal("wire error does not match its class")
	}
	if _, status := ErrorFrom(errors.New("boom")); status != 500 {
		t.Fatalf("unclassified error: %d", status)
	}
}
