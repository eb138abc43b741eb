// Package retry is how control code tries again. Conflicts is optimistic
// concurrency: when another writer got in first (api.ErrConflict), read
// again and redo at once, a bounded number of times. Every is for work
// that needs time between tries (a busy host, an election): a fixed pause
// that ends early with ctx. Both are cenkalti/backoff underneath and stop
// at once on any other error or when ctx ends.
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/vdc-project/vdc/api"
)

// Conflicts runs fn until it succeeds or fails with an error other than
// api.ErrConflict (or one wrapped by Stop), at most tries times (0: until
// ctx ends), and returns its last error.
func Conflicts(ctx context.Context, tries int, fn func() error) error {
	return run(ctx, tries, &backoff.ZeroBackOff{}, func() error {
		err := fn()
		var stop *stopError
		if errors.As(err, &stop) {
			return backoff.Permanent(stop.err)
		}
		if err != nil && !errors.Is(err, api.ErrConflict) {
			return backoff.Permanent(err)
		}
		return err
	})
}

// Every runs fn until it succeeds or returns a Stop error, pausing d
// between tries, at most tries times (0: until ctx ends). It returns fn's
// last error, or ctx's.
func Every(ctx context.Context, tries int, d time.Duration, fn func() error) error {
	return run(ctx, tries, backoff.NewConstantBackOff(d), func() error {
		err := fn()
		var stop *stopError
		if errors.As(err, &stop) {
			return backoff.Permanent(stop.err)
		}
		return err
	})
}

// Stop wraps an error that must not be retried (a conflict that a new
// try would not settle, for Conflicts).
func Stop(err error) error { return &stopError{err} }

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

func run(ctx context.Context, tries int, b backoff.BackOff, fn func() error) error {
	if tries < 0 {
		tries = 0
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, fn() },
		backoff.WithBackOff(b), backoff.WithMaxTries(uint(tries)), backoff.WithMaxElapsedTime(0))
	// backoff returns a permanent error wrapped when it came on the last try.
	var perm *backoff.PermanentError
	if errors.As(err, &perm) {
		return perm.Unwrap()
	}
	return err
}
