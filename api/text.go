package api

import (
	"strings"
	"unicode/utf8"
)

// Free text (descriptions, label values, snapshot notes, kernel command
// lines...) ends up in CLI tables, terminals and logs. Control characters
// there are a way to attack whoever reads them: ESC starts terminal escape
// sequences (clear the screen, set the window title, rewrite what was
// printed), C1 codes such as U+009B do the same on some terminals, and
// Unicode bidi overrides and invisible format characters make text read
// differently from what it is. The API refuses them in what it is given
// and sanitizes them in what it imports; the CLI escapes them in what it
// prints.

// UnsafeRune reports whether r must not appear in free text: C0 controls
// (tab and line breaks included: see ValidateMultilineText for fields that
// may span lines), DEL, C1 controls, the bidi embedding, override and
// isolate controls, and the zero-width and other invisible format
// characters.
func UnsafeRune(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r == 0x061c: // Arabic letter mark
		return true
	case r >= 0x200b && r <= 0x200f: // zero-width space, (non-)joiner, LRM, RLM
		return true
	case r >= 0x2028 && r <= 0x202e: // line and paragraph separators, LRE..RLO
		return true
	case r >= 0x2060 && r <= 0x206f: // word joiner, invisible operators, LRI..PDI, deprecated format
		return true
	case r == 0xfeff, r >= 0xfff9 && r <= 0xfffb: // BOM, interlinear annotations
		return true
	}
	return false
}

// multilineOK are the controls a multi-line field may hold.
func multilineOK(r rune) bool { return r == '\n' || r == '\t' || r == '\r' }

// firstUnsafe finds the first character of s that a field may not hold:
// its position (1-based, in characters) and the character, or 0.
func firstUnsafe(s string, multiline bool) (int, rune, bool) {
	pos := 0
	for i, r := range s {
		pos++
		if r == utf8.RuneError && isInvalidByte(s[i:]) {
			return pos, rune(s[i]), true
		}
		if UnsafeRune(r) && !(multiline && multilineOK(r)) {
			return pos, r, false
		}
	}
	return 0, 0, false
}

// ValidateText checks a one-line free-text field, such as a description
// or a label value: it may hold any printable text, in any script, but no
// control or invisible format character. The error names the field, the
// character and its position.
func ValidateText(field, s string) error {
	return validateText(field, s, false)
}

// ValidateMultilineText checks a free-text field that may span lines (a
// cloud-init user-data file, a product property): tabs and line breaks
// are allowed, other control characters are not.
func ValidateMultilineText(field, s string) error {
	return validateText(field, s, true)
}

func validateText(field, s string, multiline bool) error {
	pos, r, invalidByte := firstUnsafe(s, multiline)
	switch {
	case pos == 0:
		return nil
	case invalidByte:
		return Errorf(ErrInvalid, "%s is not valid UTF-8: byte 0x%02x at position %d", field, r, pos)
	}
	what := "a control character"
	if r > 0x9f {
		what = "an invisible formatting character"
	}
	return Errorf(ErrInvalid, "%s has %s (%U) at position %d; use plain text", field, what, r, pos)
}

// SanitizeText makes foreign text (an imported OVF package's annotation,
// product and property text) safe to keep: each character ValidateText
// would refuse becomes U+FFFD, except that in one-line text tabs and line
// breaks become a space. It returns the text and how many characters it
// replaced with U+FFFD (the caller warns about those).
func SanitizeText(s string, multiline bool) (string, int) {
	if pos, _, _ := firstUnsafe(s, multiline); pos == 0 {
		return s, 0
	}
	var b strings.Builder
	n := 0
	for i, r := range s {
		switch {
		case r == utf8.RuneError && isInvalidByte(s[i:]):
			b.WriteRune(utf8.RuneError)
			n++
		case multiline && multilineOK(r):
			b.WriteRune(r)
		case !multiline && multilineOK(r):
			b.WriteByte(' ')
		case UnsafeRune(r):
			b.WriteRune(utf8.RuneError)
			n++
		default:
			b.WriteRune(r)
		}
	}
	return b.String(), n
}

func isInvalidByte(s string) bool {
	_, size := utf8.DecodeRuneInString(s)
	return size == 1
}

// TruncateText cuts s to at most n bytes without splitting a character.
func TruncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
