package qemu

import (
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

// needQEMU skips a test when QEMU is not installed, unless the run
// requires end-to-end tests (VDC_REQUIRE_E2E=1), where it fails.
func needQEMU(t testing.TB) {
	t.Helper()
	if err := Available(""); err != nil {
		testenv.Skip(t, "%v", err)
	}
}
