package server

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
)

var singular = api.Singular

// POST /api/v1/tasks/{id}/cancel
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	o, ok := s.cache.Get(api.KindTask, r.PathValue("id"))
	if !ok {
		return api.Errorf(api.ErrNotFound, "task %s not found", r.PathValue("id"))
	}
	t := o.(*api.Task)
	switch {
	case api.TaskDone(t.State):
		return api.Errorf(api.ErrConflict, "task %s (%s %s) has already %s", t.Metadata.ID, t.Op, t.Target.Name, t.State)

	case t.State == api.TaskRunning && !s.cancelable(t.Op):
		return api.Errorf(api.ErrConflict, "task %s (%s) cannot be canceled once it runs; wait for it to end", t.Metadata.ID, t.Op)
	}
	err := state.UpdateKind(r.Context(), s.st, nil, api.KindTask, t.Metadata.ID, func(o api.Object) error {
		tk := o.(*api.Task)
		if api.TaskDone(tk.State) {
			return api.Errorf(api.ErrConflict, "task %s has already %s", tk.Metadata.ID, tk.State)
		}
		tk.CancelRequested = true
		return nil
	})
	if err != nil {
		return err
	}
	o, _ = s.store.Get(r.Context(), api.KindTask, t.Metadata.ID)
	reply(w, http.StatusAccepted, o)
	return nil
}

// GET /api/v1/tasks?state=&target=&limit=
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return api.Errorf(api.ErrInvalid, "limit must be a whole number, got %q", v)
		}
		limit = n
	}
	state, target := q.Get("state"), q.Get("target")
	if state != "" && state != "active" && !api.TaskDone(state) && state != api.TaskQueued && state != api.TaskRunning {
		return api.Errorf(api.ErrInvalid, "state must be queued, running, active, succeeded, failed or canceled, got %q", state)
	}
	var items []*api.Task
	s.cache.Each(api.KindTask, func(o api.Object) {
		t := o.(*api.Task)
		switch {
		case state == "active" && api.TaskDone(t.State):
			return
		case state != "" && state != "active" && t.State != state:
			return
		case target != "" && t.Target.ID != target && t.Target.Name != target:
			return
		}
		items = append(items, t)
	})
	items = readable(s, r, items)
	// Newest first; IDs are time-ordered.
	sort.Slice(items, func(i, j int) bool { return items[i].Metadata.ID > items[j].Metadata.ID })
	if limit > 0 && len(items) > limit {
		items = items[:limit]
	}
	reply(w, http.StatusOK, api.List[*api.Task]{Items: nonNil(items), Revision: s.cache.Rev()})
	return nil
}

// GET /api/v1/tasks/{id}?wait=30s&after=REV waits until the task changes
// past revision REV (or finishes), for progress without polling; with
// done=true it waits for the end only.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	q := r.URL.Query()
	o, ok := s.cache.Get(api.KindTask, id)
	// A waiting client gets the change it waits for from the cache anyway;
	// others need the latest writes.
	if !ok || q.Get("wait") == "" {
		if err := s.cache.Sync(ctx); err != nil {
			return err
		}
		if o, ok = s.cache.Get(api.KindTask, id); !ok {
			return api.Errorf(api.ErrNotFound, "task %s not found", id)
		}
	}
	untilDone, err := queryBool(r, "done")
	if err != nil {
		return err
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 5*time.Minute {
			return api.Errorf(api.ErrInvalid, "wait must be a duration up to 5m, like 30s, got %q", v)
		}
		after := o.GetMeta().Revision
		if a := q.Get("after"); a != "" {
			if after, err = strconv.ParseInt(a, 10, 64); err != nil {
				return api.Errorf(api.ErrInvalid, "after must be a revision, got %q", a)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, d)
		for !api.TaskDone(o.(*api.Task).State) && (untilDone || o.GetMeta().Revision <= after) {
			n, err := s.cache.WaitChange(wctx, api.KindTask, id, o.GetMeta().Revision)
			if err != nil || n == nil {
				break
			}
			o = n
		}
		cancel()
	}
	replyObject(w, o)
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// cancelable says whether tasks of op stop when a user cancels them.
func (s *Server) cancelable(op string) bool {
	h, _ := s.runner.Handler(op)
	return h.Cancelable
}
