package tasks

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// ErrCanceled ends a task a user canceled.
var ErrCanceled = api.Errorf(api.ErrConflict, "canceled by request; what the task had done was undone")

// New makes a queued task record of op on target, owned by the user ctx
// acts for.
func New(ctx context.Context, op string, target api.Object, params any) *api.Task {
	m := target.GetMeta()
	t := &api.Task{
		Metadata: api.ObjectMeta{ID: store.NewID()},
		Op:       op,
		Target:   api.TaskTarget{Kind: target.Kind(), ID: m.ID, Name: m.Name},
		Owner:    auth.User(ctx),
		State:    api.TaskQueued,
	}
	if params != nil {
		t.Params, _ = json.Marshal(params)
	}
	return t
}

// Done marks a task that the request itself completed.
func Done(t *api.Task, result any) *api.Task {
	now := time.Now().UTC()
	t.State, t.Progress, t.Started, t.Finished = api.TaskSucceeded, 100, &now, &now
	if result != nil {
		t.Result, _ = json.Marshal(result)
	}
	return t
}

// OpName names a task's operation: "portgroup.create", "vm.delete".
func OpName(kind, verb string) string {
	return strings.TrimSuffix(kind, "s") + "." + verb
}

// Guard joins a request's own bookkeeping to the transaction that queues
// its task: the HTTP layer's Idempotency-Key, recorded with the task so
// that a repeat of a committed request gets the same task.
type Guard interface {
	// Claim adds the request's key to txn, if it has one.
	Claim(ctx context.Context, txn *store.Txn, t *api.Task) error
	// Settle turns a failed commit into the task a racing repeat of the
	// request recorded, or into the error to return.
	Settle(ctx context.Context, err error) (*api.Task, error)
	// Committed records that the request's writes landed.
	Committed(ctx context.Context)
}

// Submitter queues tasks: the request's writes and the task record commit
// in one transaction.
type Submitter struct {
	State *state.State
	Guard Guard // nil: no request bookkeeping
}

// Submit commits txn with the task record (and the request's guard), and
// waits until this server's cache shows it, so the caller's next read sees
// what it just did.
func (s *Submitter) Submit(ctx context.Context, txn *store.Txn, t *api.Task) (*api.Task, error) {
	if t.Metadata.ID == "" {
		t.Metadata.ID = store.NewID()
	}
	if s.Guard != nil {
		if err := s.Guard.Claim(ctx, txn, t); err != nil {
			return nil, err
		}
	}
	rev, err := txn.Create(t).Commit(ctx)
	if err != nil {
		if s.Guard != nil {
			return s.Guard.Settle(ctx, err)
		}
		return nil, err
	}
	if s.Guard != nil {
		s.Guard.Committed(ctx)
	}
	t.Metadata.Revision = rev
	audit.SetTask(ctx, t.Metadata.ID)
	if err := s.State.Cache.WaitRev(ctx, rev); err != nil {
		return nil, err
	}
	return t, nil
}
