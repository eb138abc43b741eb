package cmdutil

import (
	"bytes"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

// What an older server let in, or a hostile one sends: a description
// that clears the screen and sets the window title, a bidi override.
const (
	hostile = "ok\u001b[2J\u001b]0;pwned\u0007"
	bidi    = "invoice\u202efdp.exe"
)

func TestSafe(t *testing.T) {
	for in, want := range map[string]string{
		"plain":         "plain",
		"Grüße 東京 🚀":    "Grüße 東京 🚀",
		hostile:         `ok\x1b[2J\x1b]0;pwned\a`,
		bidi:            `invoice\u202efdp.exe`,
		"two\nlines\t!": `two\nlines\t!`,
		"c1\u009b2J":    `c1\u009b2J`,
		"del\u007f":     `del\x7f`,
		"bad\xffbyte":   `bad\xffbyte`,
	} {
		if got := Safe(in); got != want {
			t.Errorf("Safe(%q) = %s, want %s", in, got, want)
		}
	}
	if got := SafeText("line one\n\tline \u001b two"); got != "line one\n\tline \\x1b two" {
		t.Errorf("SafeText kept or lost the wrong things: %q", got)
	}
}

// A task's progress line shows what the server sent escaped.
func TestProgressLineIsEscaped(t *testing.T) {
	var b bytes.Buffer
	task := &api.Task{Op: "vm.create", Target: api.TaskTarget{Name: "evil"}, Message: hostile}
	(&lineProgress{w: &b}).update(task)
	task.Message = bidi
	task.Progress = 5
	(&lineProgress{w: &b}).update(task)
	if strings.ContainsAny(b.String(), "\u001b\u0007\u202e") {
		t.Errorf("raw control characters printed:\n%q", b.String())
	}
	if !strings.Contains(b.String(), `\x1b[2J`) || !strings.Contains(b.String(), `\u202e`) {
		t.Errorf("the escaped text is not shown:\n%s", b.String())
	}
}
