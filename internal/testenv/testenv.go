// Package testenv is the one place a test that needs something this
// machine may lack (root, QEMU, network namespaces, a tool) gives up:
// it skips, unless the run demands every end-to-end test
// (VDC_REQUIRE_E2E=1, as in CI), where it fails.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// Required says whether this run demands every end-to-end test.
func Required() bool { return os.Getenv("VDC_REQUIRE_E2E") == "1" }

// Skip skips the test with the reason, or fails it when Required.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("VDC_REQUIRE_E2E=1 but: "+format, args...)
	}
	t.Skipf(format, args...)
}

// NeedRoot skips (or fails) a test that needs root, saying what for.
func NeedRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (%s)", what)
	}
}

// NeedTools skips (or fails) a test when one of the commands is not on
// PATH (or in /usr/sbin), naming them and the packages to install.
func NeedTools(t testing.TB, install string, tools ...string) {
	t.Helper()
	var missing []string
	for _, bin := range tools {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				missing = append(missing, bin)
			}
		}
	}
	if len(missing) > 0 {
		Skip(t, "missing %v (apt-get install %s)", missing, install)
	}
}
