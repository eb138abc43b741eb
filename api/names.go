package api

import "fmt"

// MaxNameLength bounds object names: they end up in file names, QEMU's
// -name, host names and CLI tables.
const MaxNameLength = 63

// ValidateName checks an object name: 1-63 characters, letters, digits,
// '-', '_' and '.', starting with a letter or digit. The rules are those of a
// DNS label plus '_' and '.', so a name is safe in paths and command lines.
func ValidateName(kind, name string) error {
	if name == "" {
		return Errorf(ErrInvalid, "%s name is empty", kind)
	}
	if len(name) > MaxNameLength {
		return Errorf(ErrInvalid, "%s name %q is %d characters long; the limit is %d", kind, name, len(name), MaxNameLength)
	}
	for i, r := range name {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if i > 0 && (r == '-' || r == '_' || r == '.') {
			ok = true
		}
		if !ok {
			what := fmt.Sprintf("character %q", r)
			if i == 0 {
				what = "first character " + fmt.Sprintf("%q", r) + " (must be a letter or digit)"
			}
			return Errorf(ErrInvalid, "%s name %q has an invalid %s; use letters, digits, '-', '_' and '.'", kind, name, what)
		}
	}
	return nil
}
