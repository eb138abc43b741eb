// Package storetest starts a real embedded etcd for tests.
package storetest

import (
	"context"
	"testing"

	"github.com/vdc-project/vdc/internal/store"
)

// Start runs a fresh single-member etcd in a temp dir for the test's life.
func Start(t testing.TB) *store.Embedded {
	t.Helper()
	e, err := store.StartEmbedded(context.Background(), store.EmbeddedOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}
