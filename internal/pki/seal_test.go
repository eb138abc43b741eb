package pki

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSealKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pki", "seal.key")
	k, err := LoadOrCreateSealKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seal key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	again, err := LoadOrCreateSealKey(path)
	if err != nil || again.ID() != k.ID() {
		t.Fatalf("reloading the seal key gave another key (%v)", err)
	}
	sealed, err := k.Seal([]byte("the CA key"), []byte("cert"))
	if err != nil {
		t.Fatal(err)
	}
	if p, err := again.Open(sealed, []byte("cert")); err != nil || string(p) != "the CA key" {
		t.Fatalf("open: %q, %v", p, err)
	}
	if _, err := k.Open(sealed, []byte("another cert")); err == nil {
		t.Fatal("opened with another certificate bound to it")
	}
	other, err := LoadOrCreateSealKey(filepath.Join(t.TempDir(), "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Open(sealed, []byte("cert")); err == nil || other.ID() == k.ID() {
		t.Fatal("another key opened the secret, or has the same ID")
	}
}
