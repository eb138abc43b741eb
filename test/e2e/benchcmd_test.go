package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/bench"
	"github.com/vdc-project/vdc/internal/testenv"
)

// `vdc bench storage` at its smallest runs to the end and reports what
// it measured: linked and full clones made through the API from bases it
// writes itself, and a fresh thin disk that takes next to nothing.
func TestBenchStorageCommand(t *testing.T) {
	needQEMU(t)
	testenv.NeedTools(t, "qemu-utils", "qemu-io")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, vdcBin, "bench", "storage", "--runs", "1", "--data", "1MiB", "--large", "2GiB", "--dir", t.TempDir(), "-o", "json")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("vdc bench storage: %v\n%s", err, stderr)
	}
	var res bench.StorageResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("vdc bench storage -o json: %v\n%s", err, out)
	}
	if res.Runs != 1 || res.DataBytes != 1<<20 {
		t.Errorf("runs %d, data %d bytes; want 1 run of 1 MiB", res.Runs, res.DataBytes)
	}
	if res.LinkedSmallMs <= 0 || res.LinkedLargeMs <= 0 || res.FullCloneMs <= 0 || res.QemuImgMs <= 0 || res.CpSparseMs <= 0 {
		t.Errorf("a measure is missing: %+v", res)
	}
	if res.FreshThinBytes <= 0 || res.FreshThinBytes > 16<<20 {
		t.Errorf("a fresh thin 2 GiB disk takes %d bytes; want some, far less than its size", res.FreshThinBytes)
	}
}
