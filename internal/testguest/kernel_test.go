package testguest

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTools puts shell-script stand-ins for apt-get and dpkg-deb first in
// PATH, so that the Debian download flow runs without a network.
func fakeTools(t *testing.T, aptGet string) (calls string) {
	t.Helper()
	dir := t.TempDir()
	calls = filepath.Join(dir, "calls")
	write := func(name, script string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("apt-get", `echo "apt-get $*" >>`+calls+"\n"+aptGet)
	write("dpkg-deb", `echo "dpkg-deb $*" >>`+calls+`
case "$1" in
-f) echo "linux-image-9.9.0-1-amd64-unsigned (= 9.9-1) | linux-image-9.9.0-1-amd64 (= 9.9-1)" ;;
-x) mkdir -p "$3/boot" "$3/lib/modules/9.9.0-1-amd64/kernel/drivers" &&
    echo kernel >"$3/boot/vmlinuz-9.9.0-1-amd64" ;;
*) exit 2 ;;
esac
`)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return calls
}

func TestDebianKernelDownloadAndCache(t *testing.T) {
	calls := fakeTools(t, `
[ "$1" = download ] || exit 2
case "$2" in
linux-image-amd64) : >linux-image-amd64_9.9-1_amd64.deb ;;
linux-image-9.9.0-1-amd64=9.9-1) : >linux-image-9.9.0-1-amd64_9.9-1_amd64.deb ;;
*) echo "E: Unable to locate package $2" >&2; exit 100 ;;
esac
`)
	cache := t.TempDir()
	ctx := context.Background()
	k, err := debianKernel(ctx, cache, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(cache, "linux-image-9.9.0-1-amd64_9.9-1")
	if k.version != "9.9.0-1-amd64" || k.image != filepath.Join(dest, "boot/vmlinuz-9.9.0-1-amd64") ||
		k.modDir != filepath.Join(dest, "lib/modules/9.9.0-1-amd64") {
		t.Errorf("kernel = %+v", k)
	}
	log, _ := os.ReadFile(calls)
	for _, want := range []string{"apt-get download linux-image-amd64\n", "apt-get download linux-image-9.9.0-1-amd64=9.9-1\n"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("tool calls lack %q:\n%s", want, log)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(cache, "work-*")); len(left) != 0 {
		t.Errorf("work dirs left in the cache: %v", left)
	}

	// The second build finds the kernel in the cache and asks no one.
	os.Remove(calls)
	if k2, err := debianKernel(ctx, cache, slog.New(slog.DiscardHandler)); err != nil || k2 != k {
		t.Errorf("cached kernel = %+v, %v; want %+v", k2, err, k)
	}
	if log, err := os.ReadFile(calls); err == nil {
		t.Errorf("tools were run although the kernel was cached:\n%s", log)
	}
}

func TestDebianKernelDownloadFails(t *testing.T) {
	fakeTools(t, `echo "E: Failed to fetch http://deb.debian.org/debian/pool/main/l/linux-signed-amd64/x.deb  Temporary failure resolving 'deb.debian.org'" >&2
exit 100
`)
	_, err := debianKernel(context.Background(), t.TempDir(), slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("error %v does not wrap ErrUnavailable", err)
	}
	for _, want := range []string{"apt-get download linux-image-amd64 failed", "Temporary failure resolving", "network access to the Debian mirror"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func TestKernelInRejectsIncompleteExtraction(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "boot"), 0o755)
	os.MkdirAll(filepath.Join(dir, "usr/lib/modules/7.0-amd64/kernel"), 0o755)
	os.WriteFile(filepath.Join(dir, "boot/vmlinuz-7.0-amd64"), []byte("k"), 0o644)
	if _, err := kernelIn(dir); err == nil {
		t.Error("an extraction without its completion marker was accepted")
	}
	os.WriteFile(filepath.Join(dir, completeMarker), nil, 0o644)
	k, err := kernelIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Merged-/usr packages (Debian 13) keep modules under /usr/lib.
	if k.modDir != filepath.Join(dir, "usr/lib/modules/7.0-amd64") {
		t.Errorf("modDir = %s", k.modDir)
	}
}
