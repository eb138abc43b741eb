package server

import (
	"context"
	"errors"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// modify changes the object named in the request path: fn edits a copy,
// and the result commits with the task taskFor makes of it. Hosts write
// status all the time; when only that got in the way, modify reads the
// object again and redoes fn, so a user's change never fails for it. A
// change of the object's generation, which the client saw in If-Match,
// still fails with 409.
func (s *Server) modify(r *http.Request, kind string, fn func(upd api.Object) error, taskFor func(upd api.Object) *api.Task) (*api.Task, error) {
	return s.modifyGuarded(r, kind, fn, taskFor, nil)
}

// modifyGuarded is modify with guard adding its preconditions to the
// transaction (that an object the change relies on is unchanged).
func (s *Server) modifyGuarded(r *http.Request, kind string, fn func(upd api.Object) error, taskFor func(upd api.Object) *api.Task, guard func(*store.Txn)) (*api.Task, error) {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		return nil, err
	}
	cur, err := s.inv.Lookup(kind, r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	var t *api.Task
	err = retry.Conflicts(ctx, 11, func() error {
		if err := checkIfMatch(r, cur); err != nil {
			return retry.Stop(err)
		}
		upd := store.Clone(cur)
		if err := fn(upd); err != nil {
			return retry.Stop(err)
		}
		upd.GetMeta().Generation = cur.GetMeta().Generation + 1
		txn := s.store.Txn().Update(cur, upd)
		if guard != nil {
			guard(txn)
		}
		var err error
		if t, err = s.submitter.Submit(ctx, txn, taskFor(upd)); err == nil || !errors.Is(err, api.ErrConflict) {
			return err
		}
		return s.onlyStatusChanged(ctx, &cur, err, true)
	})
	return t, err
}

// onlyStatusChanged reads again an object whose commit failed with err (a
// conflict): when only its status changed (a host's report), cur becomes
// the fresh copy and err comes back for another try; when its generation
// (or, with sameName, its name) changed, someone else changed it and the
// loser gets err (409).
func (s *Server) onlyStatusChanged(ctx context.Context, cur *api.Object, err error, sameName bool) error {
	fresh, gerr := s.store.Get(ctx, (*cur).Kind(), (*cur).GetMeta().ID)
	if gerr != nil {
		return retry.Stop(gerr)
	}
	if fresh.GetMeta().Generation != (*cur).GetMeta().Generation || (sameName && fresh.GetMeta().Name != (*cur).GetMeta().Name) {
		return retry.Stop(err)
	}
	*cur = fresh
	return err
}

// update is modify for a plain PATCH: the task is done with the request.
func (s *Server) update(w http.ResponseWriter, r *http.Request, kind string, fn func(upd api.Object) error) error {
	t, err := s.modify(r, kind, fn, func(upd api.Object) *api.Task {
		return tasks.Done(tasks.New(r.Context(), tasks.OpName(kind, "update"), upd, nil), upd)
	})
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// remove deletes the object named in the path if nothing depends on it,
// with the same care for status writes as modify.
func (s *Server) remove(w http.ResponseWriter, r *http.Request, kind string) error {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		return err
	}
	cur, err := s.inv.Lookup(kind, r.PathValue("name"))
	var t *api.Task
	if err == nil {
		err = retry.Conflicts(ctx, 11, func() error {
			if err := inventory.FirstErr(checkIfMatch(r, cur), s.inv.InUse(cur)); err != nil {
				return retry.Stop(err)
			}
			var err error
			if t, err = s.submitter.Submit(ctx, s.store.Txn().Delete(cur), tasks.Done(tasks.New(ctx, tasks.OpName(kind, "delete"), cur, nil), nil)); err == nil || !errors.Is(err, api.ErrConflict) {
				return err
			}
			return s.onlyStatusChanged(ctx, &cur, err, false)
		})
	}
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
