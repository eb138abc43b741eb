package transfercmd

import (
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// What an older server let in, or a hostile one sends: a description
// that clears the screen and sets the window title, a bidi override.
const (
	hostile = "ok\u001b[2J\u001b]0;pwned\u0007"
	bidi    = "invoice\u202efdp.exe"
)

// An import plan shows what the package says escaped, and keeps the
// lines of its license agreements.
func TestPlanIsEscaped(t *testing.T) {
	var b strings.Builder
	err := printPlan(&cmdutil.Globals{Stdout: &b, Output: cmdutil.OutputTable}, &api.ImportPlan{Format: "ova",
		VMs:      []api.ImportVM{{Name: "app", OS: hostile, Description: hostile}},
		EULAs:    []string{"line one\n" + hostile},
		Warnings: []string{bidi}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(b.String(), "\u001b\u0007\u202e") {
		t.Errorf("raw control characters printed:\n%q", b.String())
	}
	if !strings.Contains(b.String(), "line one\n") {
		t.Errorf("a license agreement lost its lines:\n%s", b.String())
	}
	if !strings.Contains(b.String(), `\x1b[2J`) || !strings.Contains(b.String(), `\u202e`) {
		t.Errorf("the escaped text is not shown:\n%s", b.String())
	}
}
