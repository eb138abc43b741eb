package e2e

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readmeQuickStart returns the command lines of the README's quick start
// (its indented code blocks, in order), and fails if there are none.
func readmeQuickStart(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "## "):
			if in {
				return lines
			}
			in = l == "## Quick start"
		case in && strings.HasPrefix(l, "    ") && strings.TrimSpace(l) != "":
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) == 0 {
		t.Fatal("README.md has no quick start commands")
	}
	return lines
}

// TestREADMEQuickStart runs the README's quick start as written, top to
// bottom, in a fresh directory: `go run ./cmd/vdc up` is the test's vdc
// binary in the background (on a free port, the one change), `go build`
// is that same binary copied to ./vdc, every other line runs in sh and
// must succeed. The test suite's own command, last, is not run again.
func TestREADMEQuickStart(t *testing.T) {
	needQEMU(t)
	lines := readmeQuickStart(t)
	dir := t.TempDir()
	env := []string{"HOME=" + dir, "VDC_CONFIG=" + filepath.Join(dir, "config.json")}
	var up *proc
	t.Cleanup(func() { removeUpLab(t, filepath.Join(dir, "vdc-data"), 3) }) // last: vdc up as root ran its hosts in a lab
	t.Cleanup(func() { killVMsUnder(dir) })
	for _, l := range lines {
		switch {
		case l == "go run ./cmd/vdc up":
			listen := freePort(t)
			cmd := exec.Command(vdcBin, "up", "--listen", listen)
			cmd.Dir = dir
			up = startProc(t, "vdc up (README)", env, cmd)
			eventually(t, 3*time.Minute, "vdc up says it is up", func() bool {
				return strings.Contains(up.out.String(), "vdc is up")
			})
			t.Logf("$ %s\n%s", l, up.out.String())
			continue
		case l == "go build -o vdc ./cmd/vdc":
			b, err := os.ReadFile(vdcBin)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, "vdc"), b, 0o755)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		case l == "./scripts/test":
			continue // this test is part of it
		}
		if up == nil {
			t.Fatalf("README line %q comes before `go run ./cmd/vdc up`", l)
		}
		cmd := exec.Command("sh", "-ec", l)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		t.Logf("$ %s\n%s", l, out)
		if err != nil {
			t.Fatalf("README line %q failed: %v\n%s\n--- vdc up:\n%s", l, err, out, up.out.String())
		}
	}
	if up == nil {
		t.Fatal("the README's quick start never starts vdc")
	}
}
