package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// Run is one execution of a task, handed to its handler.
type Run struct {
	r *Runner
	// Task is the latest version of the task this run wrote.
	Task *api.Task
	Log  *slog.Logger
	// Resumed says a previous leader started the task.
	Resumed bool
	// Leader ends when this server stops leading; the handler's own ctx
	// also ends when a user cancels the task.
	Leader context.Context
	// Summary, if set, is the message a task that succeeds ends with.
	Summary string

	cancel context.CancelFunc

	mu           sync.Mutex
	lastProgress time.Time

	staged []stagedChange
	afters []func()
}

// Params decodes the task's parameters.
func (t *Run) Params(v any) error {
	if len(t.Task.Params) == 0 {
		return nil
	}
	if err := json.Unmarshal(t.Task.Params, v); err != nil {
		return fmt.Errorf("task %s: bad parameters: %w", t.Task.Metadata.ID, err)
	}
	return nil
}

// Canceled says whether the task's ctx ended because a user canceled it
// (as opposed to this server losing leadership, when the task must be left
// for the next leader to resume).
func (t *Run) Canceled(ctx context.Context) bool {
	return ctx.Err() != nil && t.Leader.Err() == nil
}

// CleanupCtx is for undoing work after a cancel: it outlives the task's ctx.
func (t *Run) CleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(t.Leader), 2*time.Minute)
}

// Progress records how far the task is; writes are throttled. The
// percent never goes back (a step that measures its own share, a resumed
// task starting its count over): a user takes a drop for a restart.
func (t *Run) Progress(ctx context.Context, pct int, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pct = max(pct, t.Task.Progress)
	now := time.Now()
	if now.Sub(t.lastProgress) < 250*time.Millisecond && pct < 100 {
		return
	}
	t.lastProgress = now
	upd := store.Clone(t.Task)
	upd.Progress, upd.Message = pct, msg
	rev, err := t.r.fence().Update(t.Task, upd).Commit(ctx)
	if err != nil {
		t.Log.Warn("cannot record task progress", "err", err)
		return
	}
	upd.Metadata.Revision = rev
	t.Task = upd
}

// Note changes the task's message, keeping its progress.
func (t *Run) Note(ctx context.Context, msg string) {
	t.mu.Lock()
	pct := t.Task.Progress
	t.mu.Unlock()
	t.Progress(ctx, pct, msg)
}

// stagedChange is a change to an object that commits with the task's
// outcome: what the task found out (a VM's new power state, its phase)
// holds whether or not the task as a whole succeeded.
type stagedChange struct {
	kind, id string
	fn       func(api.Object) error
}

// Stage adds a change to commit with the task's outcome, saving a write.
// fn returning state.ErrUnchanged leaves the object as it is.
func (t *Run) Stage(kind, id string, fn func(api.Object) error) {
	t.staged = append(t.staged, stagedChange{kind, id, fn})
}

// After runs fn once the task's outcome is recorded.
func (t *Run) After(fn func()) { t.afters = append(t.afters, fn) }

// applyStaged adds the staged changes to txn, reading each object from the
// cache, or from etcd after a conflict.
func (t *Run) applyStaged(ctx context.Context, txn *store.Txn, fresh bool) error {
	st := t.r.st
	done := map[string]bool{}
	for _, c := range t.staged {
		key := c.kind + "/" + c.id
		if done[key] {
			continue
		}
		done[key] = true
		var cur api.Object
		if o, ok := st.Cache.Get(c.kind, c.id); ok && !fresh {
			cur = o
		} else {
			var err error
			if cur, err = st.Store.Get(ctx, c.kind, c.id); err != nil {
				if errors.Is(err, api.ErrNotFound) {
					continue // removed by the task itself
				}
				return err
			}
		}
		upd := store.Clone(cur)
		changed := false
		for _, other := range t.staged {
			if other.kind != c.kind || other.id != c.id {
				continue
			}
			err := other.fn(upd)
			if errors.Is(err, state.ErrUnchanged) {
				continue
			}
			if err != nil {
				return err
			}
			changed = true
		}
		if changed {
			txn.Update(cur, upd)
		}
	}
	return nil
}

// Announce records a step's progress at once, past the throttle: a step
// that is long (a merge) and that a user watching wants to see start.
func (t *Run) Announce(ctx context.Context, pct int, msg string) {
	t.mu.Lock()
	t.lastProgress = time.Time{}
	t.mu.Unlock()
	t.Progress(ctx, pct, msg)
}
