package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/retry"
)

func TestConflictsRetriesOnlyConflicts(t *testing.T) {
	ctx := context.Background()
	n := 0
	err := retry.Conflicts(ctx, 5, func() error {
		n++
		if n < 3 {
			return api.Errorf(api.ErrConflict, "vm a changed")
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("two conflicts then success: %v after %d tries", err, n)
	}
	n = 0
	err = retry.Conflicts(ctx, 5, func() error { n++; return api.Errorf(api.ErrConflict, "vm a changed") })
	if !errors.Is(err, api.ErrConflict) || n != 5 {
		t.Fatalf("conflicts every time: %v after %d tries", err, n)
	}
	n = 0
	notFound := api.Errorf(api.ErrNotFound, "vm a not found")
	if err := retry.Conflicts(ctx, 5, func() error { n++; return notFound }); err != notFound || n != 1 {
		t.Fatalf("another error: %v after %d tries", err, n)
	}
	n = 0
	done := api.Errorf(api.ErrConflict, "task x has already succeeded")
	if err := retry.Conflicts(ctx, 5, func() error { n++; return retry.Stop(done) }); err != done || n != 1 {
		t.Fatalf("a conflict marked final: %v after %d tries", err, n)
	}
	n = 0
	if err := retry.Conflicts(ctx, 1, func() error { n++; return notFound }); err != notFound || n != 1 {
		t.Fatalf("another error on the last try comes back as it is: %v", err)
	}
}

func TestEveryStopsOnStopAndContext(t *testing.T) {
	n := 0
	busy := errors.New("host busy")
	err := retry.Every(context.Background(), 3, time.Millisecond, func() error { n++; return busy })
	if err != busy || n != 3 {
		t.Fatalf("three tries: %v after %d", err, n)
	}
	n = 0
	bad := errors.New("bad request")
	if err := retry.Every(context.Background(), 0, time.Millisecond, func() error { n++; return retry.Stop(bad) }); err != bad || n != 1 {
		t.Fatalf("stop: %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n = 0
	err = retry.Every(ctx, 0, time.Hour, func() error { n++; cancel(); return busy })
	if !errors.Is(err, context.Canceled) || n != 1 {
		t.Fatalf("a canceled wait: %v after %d", err, n)
	}
}
