// Package statetest gives the control packages' unit tests a real store: a
// fresh embedded etcd with a started cache.
package statetest

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
	"github.com/vdc-project/vdc/internal/store/storetest"
)

// New returns the state of a fresh store for the test's life.
func New(t testing.TB) *state.State {
	t.Helper()
	e := storetest.Start(t)
	st := store.New(e.Client)
	c := store.NewCache(st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start the store's cache: %v", err)
	}
	return &state.State{Store: st, Cache: c}
}
