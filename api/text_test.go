package api

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateText(t *testing.T) {
	for _, ok := range []string{"", "web tier", "Grüße, 東京 — ok", "emoji 🚀", "a\\x1b literal backslash", "שלום עולם"} {
		if err := ValidateText("description", ok); err != nil {
			t.Errorf("ValidateText(%q): %v", ok, err)
		}
	}
	bad := map[string]string{
		"ok\u001b[2J\u001b]0;pwned": "control character (U+001B) at position 3",
		"line\nbreak":               "(U+000A) at position 5",
		"tab\there":                 "(U+0009) at position 4",
		"del\u007f":                 "(U+007F) at position 4",
		"c1 \u009b2J":               "(U+009B) at position 4",
		"evil\u202etxt.exe":         "invisible formatting character (U+202E) at position 5",
		"iso\u2066late":             "(U+2066) at position 4",
		"zero\u200bwidth":           "(U+200B) at position 5",
		"rlm\u200f":                 "(U+200F) at position 4",
		"bom\ufeff":                 "(U+FEFF) at position 4",
		"Grüße\u001b":               "at position 6", // positions count characters, not bytes
		"bad \xff byte":             "not valid UTF-8: byte 0xff at position 5",
	}
	for in, want := range bad {
		err := ValidateText("description", in)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "description ") {
			t.Errorf("ValidateText(%q) = %v; want an ErrInvalid naming the field and %q", in, err, want)
		}
	}
}

func TestValidateMultilineText(t *testing.T) {
	if err := ValidateMultilineText("user-data", "#cloud-config\r\npackages:\n\t- nginx\n"); err != nil {
		t.Errorf("line breaks and tabs in a multi-line field: %v", err)
	}
	for _, in := range []string{"#!/bin/sh\necho \u001b[2J", "x\u0000", "x\u202e"} {
		if err := ValidateMultilineText("user-data", in); err == nil {
			t.Errorf("ValidateMultilineText(%q) accepted it", in)
		}
	}
}

func TestSanitizeText(t *testing.T) {
	cases := []struct {
		in        string
		multiline bool
		want      string
		n         int
	}{
		{"plain Grüße", false, "plain Grüße", 0},
		{"two\nlines\tand tab", false, "two lines and tab", 0},
		{"two\nlines", true, "two\nlines", 0},
		{"ok\u001b[2J\u001b]0;pwned", false, "ok\ufffd[2J\ufffd]0;pwned", 2},
		{"evil\u202etxt", true, "evil\ufffdtxt", 1},
		{"bad\xffbyte", false, "bad\ufffdbyte", 1},
	}
	for _, c := range cases {
		got, n := SanitizeText(c.in, c.multiline)
		if got != c.want || n != c.n {
			t.Errorf("SanitizeText(%q, %v) = %q, %d; want %q, %d", c.in, c.multiline, got, n, c.want, c.n)
		}
		if err := validateText("x", got, c.multiline); err != nil {
			t.Errorf("sanitized %q is still refused: %v", got, err)
		}
	}
}

func TestTruncateText(t *testing.T) {
	if got := TruncateText("aé", 2); got != "a" {
		t.Errorf("TruncateText split a character: %q", got)
	}
	if got := TruncateText("abc", 5); got != "abc" {
		t.Errorf("TruncateText(abc, 5) = %q", got)
	}
}
