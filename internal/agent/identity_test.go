package agent

import (
	"testing"
)

func TestParseJoinToken(t *testing.T) {
	fp := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	if s, f, err := ParseJoinToken("vdc1.secret." + fp); err != nil || s != "secret" || f != fp {
		t.Fatalf("%q %q %v", s, f, err)
	}
	for _, bad := range []string{"", "vdc1.secret", "vdc2.secret." + fp, "vdc1.secret.short"} {
		if _, _, err := ParseJoinToken(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
