package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

func needQemuImg(t *testing.T) {
	if Available() {
		return
	}
	testenv.Skip(t, "qemu-img is not installed (apt-get install qemu-utils)")
}

func TestThinDiskOverlayAndCopy(t *testing.T) {
	needQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	if err := Create(ctx, base, 100<<30); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(ctx, base)
	if err != nil || info.Format != "qcow2" || info.VirtualSize != 100<<30 {
		t.Fatalf("%+v %v", info, err)
	}
	if a, _ := Allocated(base); a > 10<<20 {
		t.Fatalf("a fresh 100 GiB thin disk takes %d bytes", a)
	}
	ov := filepath.Join(dir, "ov.qcow2")
	if err := CreateOverlay(ctx, ov, base, "qcow2", 200<<30); err != nil {
		t.Fatal(err)
	}
	info, err = Inspect(ctx, ov)
	if err != nil || info.BackingFile != base || info.VirtualSize != 200<<30 {
		t.Fatalf("overlay %+v %v", info, err)
	}
	raw := filepath.Join(dir, "x.img") // raw, whatever its name
	if err := os.WriteFile(raw, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	info, _ = Inspect(ctx, raw)
	if info.Format != "raw" {
		t.Fatalf("format from content: %q", info.Format)
	}
	cp := filepath.Join(dir, "cp.qcow2")
	if err := Convert(ctx, raw, "raw", cp); err != nil {
		t.Fatal(err)
	}
	if info, _ := Inspect(ctx, cp); info.Format != "qcow2" || info.VirtualSize != 1<<20 {
		t.Fatalf("converted: %+v", info)
	}
}

func TestCorruptAndMissingDisksFailClearly(t *testing.T) {
	needQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.qcow2")
	if err := Create(ctx, good, 1<<30); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.qcow2")
	os.WriteFile(trunc, b[:100], 0o644)
	if _, err := Inspect(ctx, trunc); err == nil || !strings.Contains(err.Error(), "trunc.qcow2") {
		t.Fatalf("truncated qcow2: %v", err)
	}
	if _, err := Inspect(ctx, filepath.Join(dir, "missing.qcow2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	if err := Create(ctx, filepath.Join(dir, "nodir", "x.qcow2"), 1<<30); err == nil {
		t.Fatal("created a disk in a missing directory")
	}
}

func TestReadHeaderMatchesQemuImg(t *testing.T) {
	needQemuImg(t)
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	ov := filepath.Join(dir, "ov.qcow2")
	if err := Create(ctx, base, 3<<30); err != nil {
		t.Fatal(err)
	}
	if err := CreateOverlayOn(ctx, ov, base, "qcow2", 5<<30); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{base, ov} {
		h, err := ReadHeader(p)
		info, ierr := Inspect(ctx, p)
		if err != nil || ierr != nil || h.VirtualSize != info.VirtualSize || h.Backing != info.BackingFile {
			t.Fatalf("%s: header %+v %v, qemu-img %+v %v", p, h, err, info, ierr)
		}
	}
	raw := filepath.Join(dir, "raw.img")
	os.WriteFile(raw, make([]byte, 1<<20), 0o644)
	if h, err := ReadHeader(raw); err != nil || h.VirtualSize != 1<<20 || h.Backing != "" {
		t.Fatalf("raw: %+v %v", h, err)
	}
}
