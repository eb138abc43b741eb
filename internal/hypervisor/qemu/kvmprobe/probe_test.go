package kvmprobe

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/testenv"
)

// The probe guest really runs (under TCG, which always works).
func TestProbeGuestRuns(t *testing.T) {
	testenv.NeedTools(t, "qemu-system-x86", "qemu-system-x86_64")
	img := filepath.Join(t.TempDir(), "probe.img")
	if err := os.WriteFile(img, probeSector, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := probe(context.Background(), "qemu-system-x86_64", img, "tcg", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("probe under TCG: %s; KVM verdict: %v", d, KVM(context.Background(), "qemu-system-x86_64"))
}
