package qemu

import (
	"os"
	"testing"
)

// needQEMU skips a test when QEMU is not installed, unless the run
// requires end-to-end tests (VDC_REQUIRE_E2E=1), where it fails.
func needQEMU(t testing.TB) {
	t.Helper()
	if err := Available(""); err != nil {
		if os.Getenv("VDC_REQUIRE_E2E") == "1" {
			t.Fatalf("%v, and VDC_REQUIRE_E2E=1", err)
		}
		t.Skip(err)
	}
}
