package leader_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/leader"
	"github.com/vdc-project/vdc/internal/store"
	"github.com/vdc-project/vdc/internal/store/storetest"
)

// Two servers on one store: one leads; a write fenced by the other fails;
// when the leader resigns, the other takes over and the old leader's
// fenced writes fail from then on.
func TestOneLeaderAndFencedWrites(t *testing.T) {
	e := storetest.Start(t)
	st := store.New(e.Client)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, b := leader.New(st, "s1", quiet), leader.New(st, "s2", quiet)
	leading := make(chan string, 4)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	go a.Campaign(ctxA, func(context.Context) { leading <- "s1" }, func() {})
	first := <-leading
	if first != "s1" || !a.IsLeader() || b.IsLeader() {
		t.Fatalf("first leader %s, a %v b %v", first, a.IsLeader(), b.IsLeader())
	}
	go b.Campaign(ctxB, func(context.Context) { leading <- "s2" }, func() {})
	ctx := context.Background()
	dc := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc1"}}
	if _, err := b.Txn().Create(dc).Commit(ctx); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("a write fenced by the follower: %v", err)
	}
	if _, err := a.Txn().Create(dc).Commit(ctx); err != nil {
		t.Fatalf("a write fenced by the leader: %v", err)
	}
	if name, err := b.Leader(ctx); err != nil || name != "s1" {
		t.Fatalf("leader seen by s2: %q %v", name, err)
	}
	resign := a.Resigner()
	stopA()
	resign(ctx)
	select {
	case second := <-leading:
		if second != "s2" {
			t.Fatalf("after s1 resigned, %s leads", second)
		}
	case <-time.After(time.Minute):
		t.Fatal("s2 did not take over within a minute of s1 resigning")
	}
	dc2 := &api.Datacenter{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "dc2"}}
	if _, err := a.Txn().Create(dc2).Commit(ctx); !errors.Is(err, api.ErrUnavailable) {
		t.Fatalf("a write fenced by the old leader: %v", err)
	}
	if _, err := b.Txn().Create(dc2).Commit(ctx); err != nil {
		t.Fatalf("a write fenced by the new leader: %v", err)
	}
}
