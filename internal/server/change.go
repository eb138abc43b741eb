package server

import (
	"errors"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
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
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		return nil, err
	}
	cur, err := s.inv.Lookup(kind, r.PathValue("name"))
	if err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		if err := checkIfMatch(r, cur); err != nil {
			return nil, err
		}
		upd := store.Clone(cur)
		if err := fn(upd); err != nil {
			return nil, err
		}
		upd.GetMeta().Generation = cur.GetMeta().Generation + 1
		t, err := s.submitter.Submit(ctx, s.store.Txn().Update(cur, upd), taskFor(upd))
		if err == nil || !errors.Is(err, api.ErrConflict) || try == 10 {
			return t, err
		}
		fresh, gerr := s.store.Get(ctx, kind, cur.GetMeta().ID)
		if gerr != nil {
			return nil, gerr
		}
		if fresh.GetMeta().Generation != cur.GetMeta().Generation || fresh.GetMeta().Name != cur.GetMeta().Name {
			return nil, err // someone else changed it: the loser gets 409
		}
		cur = fresh
	}
}

// update is modify for a plain PATCH: the task is done with the request.
func (s *Server) update(w http.ResponseWriter, r *http.Request, kind string, fn func(upd api.Object) error) {
	t, err := s.modify(r, kind, fn, func(upd api.Object) *api.Task {
		return tasks.Done(tasks.New(r.Context(), tasks.OpName(kind, "update"), upd, nil), upd)
	})
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// remove deletes the object named in the path if nothing depends on it,
// with the same care for status writes as modify.
func (s *Server) remove(w http.ResponseWriter, r *http.Request, kind string) {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	cur, err := s.inv.Lookup(kind, r.PathValue("name"))
	for try := 0; err == nil; try++ {
		if err = inventory.FirstErr(checkIfMatch(r, cur), s.inUse(cur)); err != nil {
			break
		}
		t := tasks.Done(tasks.New(ctx, tasks.OpName(kind, "delete"), cur, nil), nil)
		if t, err = s.submitter.Submit(ctx, s.store.Txn().Delete(cur), t); err == nil {
			replyTask(w, t)
			return
		}
		if !errors.Is(err, api.ErrConflict) || try == 10 {
			break
		}
		fresh, gerr := s.store.Get(ctx, kind, cur.GetMeta().ID)
		if gerr != nil {
			err = gerr
			break
		}
		if fresh.GetMeta().Generation != cur.GetMeta().Generation {
			break
		}
		cur = fresh
	}
	fail(w, err)
}
