package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/store"
)

var singular = api.Singular

// taskHandler does the work of one kind of task.
type taskHandler struct {
	run func(ctx context.Context, t *taskRun) (result any, err error)
	// resumable handlers can run again after a leader died half-way: they
	// check what is already done. The others are failed with a reason.
	resumable bool
	// interrupted says what may be left when a non-resumable task dies.
	interrupted string
	// cancelable handlers stop, undoing what they did, when a user cancels
	// them while they run (their ctx ends; taskRun.canceled tells why).
	cancelable bool
	// canceledQueued undoes what the request itself left for the task
	// (files handed to it) when the task is canceled before it ran.
	canceledQueued func(ctx context.Context, t *taskRun)
}

// taskRun is one execution of a task.
type taskRun struct {
	s       *Server
	task    *api.Task // latest version written by this run
	log     *slog.Logger
	resumed bool // a previous leader started it
	// leader ends when this server stops leading; the handler's own ctx
	// also ends when a user cancels the task.
	leader context.Context
	cancel context.CancelFunc

	mu           sync.Mutex
	lastProgress time.Time

	staged []stagedChange
	afters []func()
	// summary, if set, is the message a task that succeeds ends with.
	summary string
}

// params decodes the task's parameters.
func (t *taskRun) params(v any) error {
	if len(t.task.Params) == 0 {
		return nil
	}
	if err := json.Unmarshal(t.task.Params, v); err != nil {
		return fmt.Errorf("task %s: bad parameters: %w", t.task.Metadata.ID, err)
	}
	return nil
}

// canceled says whether the task's ctx ended because a user canceled it
// (as opposed to this server losing leadership, when the task must be left
// for the next leader to resume).
func (t *taskRun) canceled(ctx context.Context) bool {
	return ctx.Err() != nil && t.leader.Err() == nil
}

// cleanupCtx is for undoing work after a cancel: it outlives the task's ctx.
func (t *taskRun) cleanupCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(t.leader), 2*time.Minute)
}

// progress records how far the task is; writes are throttled. The
// percent never goes back (a step that measures its own share, a resumed
// task starting its count over): a user takes a drop for a restart.
func (t *taskRun) progress(ctx context.Context, pct int, msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pct = max(pct, t.task.Progress)
	now := time.Now()
	if now.Sub(t.lastProgress) < 250*time.Millisecond && pct < 100 {
		return
	}
	t.lastProgress = now
	upd := store.Clone(t.task)
	upd.Progress, upd.Message = pct, msg
	rev, err := t.s.leaderTxn().Update(t.task, upd).Commit(ctx)
	if err != nil {
		t.log.Warn("cannot record task progress", "err", err)
		return
	}
	upd.Metadata.Revision = rev
	t.task = upd
}

// note changes the task's message, keeping its progress.
func (t *taskRun) note(ctx context.Context, msg string) {
	t.mu.Lock()
	pct := t.task.Progress
	t.mu.Unlock()
	t.progress(ctx, pct, msg)
}

// runner executes queued tasks on the leader: tasks on the same object one
// after another in the order they were queued, others in parallel.
type runner struct {
	s        *Server
	handlers map[string]taskHandler

	mu      sync.Mutex
	ctx     context.Context
	queues  map[string][]*api.Task // by target
	known   map[string]bool        // task IDs queued or running here
	running map[string]*taskRun    // by task ID
	wg      sync.WaitGroup
	sem     chan struct{}
}

func newRunner(s *Server) *runner {
	r := &runner{s: s, handlers: map[string]taskHandler{}, sem: make(chan struct{}, 64)}
	s.registerTaskHandlers(r)
	return r
}

func (r *runner) register(op string, h taskHandler) { r.handlers[op] = h }

// start runs tasks until ctx ends: the queued ones now and later, and the
// ones a previous leader left running.
func (r *runner) start(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	r.queues = map[string][]*api.Task{}
	r.known = map[string]bool{}
	r.running = map[string]*taskRun{}
	r.mu.Unlock()
	_, cancel := r.s.cache.Subscribe(func(ch store.Change) {
		if ch.Kind != api.KindTask || ch.Obj == nil {
			return
		}
		t := ch.Obj.(*api.Task)
		switch {
		case t.State == api.TaskQueued:
			r.enqueue(t)
		case t.State == api.TaskRunning && t.CancelRequested:
			r.mu.Lock()
			if run := r.running[t.Metadata.ID]; run != nil {
				run.cancel()
			}
			r.mu.Unlock()
		}
	})
	go func() {
		<-ctx.Done()
		cancel()
	}()
	var pending []*api.Task
	r.s.cache.Each(api.KindTask, func(o api.Object) {
		if t := o.(*api.Task); t.State == api.TaskQueued || t.State == api.TaskRunning {
			pending = append(pending, t)
		}
	})
	sort.Slice(pending, func(i, j int) bool { return pending[i].Metadata.ID < pending[j].Metadata.ID })
	for _, t := range pending {
		r.enqueue(t)
	}
}

// wait blocks until every task goroutine has stopped.
func (r *runner) wait() { r.wg.Wait() }

func targetKey(t *api.Task) string { return t.Target.Kind + "/" + t.Target.ID }

func (r *runner) enqueue(t *api.Task) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil || r.ctx.Err() != nil || r.known[t.Metadata.ID] {
		return
	}
	r.known[t.Metadata.ID] = true
	key := targetKey(t)
	q, busy := r.queues[key]
	r.queues[key] = append(q, t)
	if !busy {
		r.wg.Add(1)
		go r.drain(r.ctx, key)
	}
}

// drain runs the tasks of one target in order.
func (r *runner) drain(ctx context.Context, key string) {
	defer r.wg.Done()
	for {
		r.mu.Lock()
		q := r.queues[key]
		if len(q) == 0 || ctx.Err() != nil {
			delete(r.queues, key)
			r.mu.Unlock()
			return
		}
		t := q[0]
		r.queues[key] = q[1:]
		r.mu.Unlock()

		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		r.execute(ctx, t)
		<-r.sem
		r.mu.Lock()
		delete(r.known, t.Metadata.ID)
		r.mu.Unlock()
	}
}

func (r *runner) execute(ctx context.Context, t *api.Task) {
	log := r.s.log.With("task", t.Metadata.ID, "op", t.Op, "target", t.Target.Name)
	h, ok := r.handlers[t.Op]
	// Progress is first written a moment into the run: quick tasks need none.
	run := &taskRun{s: r.s, task: t, log: log, resumed: t.State == api.TaskRunning, lastProgress: time.Now(), leader: ctx}
	if !ok {
		r.finish(ctx, run, nil, fmt.Errorf("this server does not know how to run %q tasks", t.Op))
		return
	}
	if t.CancelRequested && t.State == api.TaskQueued {
		r.cancelQueued(ctx, run, h)
		return
	}
	if run.resumed && !h.resumable {
		r.finish(ctx, run, nil, fmt.Errorf("interrupted: the management server stopped while this task ran; %s", h.interrupted))
		return
	}
	var upd *api.Task
	for {
		upd = store.Clone(t)
		upd.State = api.TaskRunning
		upd.Server = r.s.name
		if upd.Started == nil {
			now := time.Now().UTC()
			upd.Started = &now
		}
		rev, err := r.s.leaderTxn().Update(t, upd).Commit(ctx)
		if err == nil {
			upd.Metadata.Revision = rev
			break
		}
		if !errors.Is(err, api.ErrConflict) {
			log.Warn("cannot start task", "err", err)
			return
		}
		// Changed since it was queued (a cancel request, most often): no
		// other change of it may come to queue it again, so go on from
		// the current version here.
		fresh, gerr := r.s.store.Get(ctx, api.KindTask, t.Metadata.ID)
		if gerr != nil {
			log.Warn("cannot start task", "err", gerr)
			return
		}
		t = fresh.(*api.Task)
		run.task = t
		if api.TaskDone(t.State) {
			return
		}
		if t.CancelRequested && t.State == api.TaskQueued {
			r.cancelQueued(ctx, run, h)
			return
		}
	}
	run.task = upd
	if run.resumed {
		log.Info("resuming a task a previous leader left running")
	}
	start := time.Now()
	tctx, cancel := context.WithCancel(ctx)
	run.cancel = cancel
	// What a call to a host waits for (the host's agent restarting) shows
	// as the task's message.
	tctx = agent.WithNotice(tctx, func(msg string) { run.note(tctx, msg) })
	r.mu.Lock()
	r.running[t.Metadata.ID] = run
	r.mu.Unlock()
	if upd.CancelRequested {
		cancel() // asked for between queueing and now
	}
	result, err := h.run(tctx, run)
	userCanceled := run.canceled(tctx)
	cancel()
	r.mu.Lock()
	delete(r.running, t.Metadata.ID)
	r.mu.Unlock()
	if ctx.Err() != nil {
		// Leadership lost or shutting down: the next leader resumes it.
		log.Info("task interrupted; it will be resumed", "err", err)
		return
	}
	if err != nil && userCanceled {
		err = errCanceled
	}
	r.finish(ctx, run, result, err)
	log.Debug("task finished", "took", time.Since(start), "err", err)
}

// cancelQueued ends a task canceled before it ran.
func (r *runner) cancelQueued(ctx context.Context, run *taskRun, h taskHandler) {
	if h.canceledQueued != nil {
		h.canceledQueued(ctx, run)
	}
	r.finish(ctx, run, nil, errCanceled)
}

// finish records a task's outcome together with the changes the run
// staged, in one transaction that also lets go of the task's claims, then
// runs the run's after-hooks.
func (r *runner) finish(ctx context.Context, run *taskRun, result any, err error) {
	defer func() {
		for _, fn := range run.afters {
			fn()
		}
	}()
	for try := 0; try < 5; try++ {
		upd := store.Clone(run.task)
		now := time.Now().UTC()
		upd.Finished = &now
		if upd.Started == nil {
			upd.Started = &now
		}
		switch {
		case errors.Is(err, errCanceled):
			upd.State = api.TaskCanceled
			upd.Error, _ = api.ErrorFrom(err)
		case err != nil:
			upd.State = api.TaskFailed
			upd.Error, _ = api.ErrorFrom(err)
		default:
			upd.State = api.TaskSucceeded
			upd.Progress = 100
			upd.Message = run.summary
			if result != nil {
				upd.Result, _ = json.Marshal(result)
			}
		}
		txn := r.s.leaderTxn()
		for _, c := range run.task.Claims {
			txn.DeleteRaw(store.ClaimKey(c)) // the names are recorded, or free again
		}
		if serr := run.applyStaged(ctx, txn, try > 0); serr != nil {
			run.log.Error("cannot record what the task changed", "err", serr)
		}
		_, werr := txn.Update(run.task, upd).Commit(ctx)
		if werr == nil {
			return
		}
		if !errors.Is(werr, api.ErrConflict) {
			run.log.Error("cannot record task result", "err", werr)
			return
		}
		cur, gerr := r.s.store.Get(ctx, api.KindTask, run.task.Metadata.ID)
		if gerr != nil {
			run.log.Error("cannot record task result", "err", gerr)
			return
		}
		run.task = cur.(*api.Task)
	}
}

// stagedChange is a change to an object that commits with the task's
// outcome: what the task found out (a VM's new power state, its phase)
// holds whether or not the task as a whole succeeded.
type stagedChange struct {
	kind, id string
	fn       func(api.Object) error
}

// stage adds a change to commit with the task's outcome, saving a write.
func (t *taskRun) stage(kind, id string, fn func(api.Object) error) {
	t.staged = append(t.staged, stagedChange{kind, id, fn})
}

// after runs fn once the task's outcome is recorded.
func (t *taskRun) after(fn func()) { t.afters = append(t.afters, fn) }

// applyStaged adds the staged changes to txn, reading each object from the
// cache, or from etcd after a conflict.
func (t *taskRun) applyStaged(ctx context.Context, txn *store.Txn, fresh bool) error {
	done := map[string]bool{}
	for _, c := range t.staged {
		key := c.kind + "/" + c.id
		if done[key] {
			continue
		}
		done[key] = true
		var cur api.Object
		if o, ok := t.s.cache.Get(c.kind, c.id); ok && !fresh {
			cur = o
		} else {
			var err error
			if cur, err = t.s.store.Get(ctx, c.kind, c.id); err != nil {
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
			if errors.Is(err, errUnchanged) {
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

// errCanceled ends a task a user canceled.
var errCanceled = api.Errorf(api.ErrConflict, "canceled by request; what the task had done was undone")

// POST /api/v1/tasks/{id}/cancel
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	o, ok := s.cache.Get(api.KindTask, r.PathValue("id"))
	if !ok {
		fail(w, api.Errorf(api.ErrNotFound, "task %s not found", r.PathValue("id")))
		return
	}
	t := o.(*api.Task)
	switch {
	case api.TaskDone(t.State):
		fail(w, api.Errorf(api.ErrConflict, "task %s (%s %s) has already %s", t.Metadata.ID, t.Op, t.Target.Name, t.State))
		return
	case t.State == api.TaskRunning && !s.runner.handlers[t.Op].cancelable:
		fail(w, api.Errorf(api.ErrConflict, "task %s (%s) cannot be canceled once it runs; wait for it to end", t.Metadata.ID, t.Op))
		return
	}
	err := s.updateObject(r.Context(), api.KindTask, t.Metadata.ID, func(o api.Object) error {
		tk := o.(*api.Task)
		if api.TaskDone(tk.State) {
			return api.Errorf(api.ErrConflict, "task %s has already %s", tk.Metadata.ID, tk.State)
		}
		tk.CancelRequested = true
		return nil
	})
	if err != nil {
		fail(w, err)
		return
	}
	o, _ = s.store.Get(r.Context(), api.KindTask, t.Metadata.ID)
	reply(w, http.StatusAccepted, o)
}

// newTask makes a task record for a request.
func newTask(ctx context.Context, op string, target api.Object, params any) *api.Task {
	m := target.GetMeta()
	t := &api.Task{
		Metadata: api.ObjectMeta{ID: store.NewID()},
		Op:       op,
		Target:   api.TaskTarget{Kind: target.Kind(), ID: m.ID, Name: m.Name},
		Owner:    userOf(ctx),
		State:    api.TaskQueued,
	}
	if params != nil {
		t.Params, _ = json.Marshal(params)
	}
	return t
}

// done marks a task that the request itself completed.
func done(t *api.Task, result any) *api.Task {
	now := time.Now().UTC()
	t.State, t.Progress, t.Started, t.Finished = api.TaskSucceeded, 100, &now, &now
	if result != nil {
		t.Result, _ = json.Marshal(result)
	}
	return t
}

// submit commits the request's writes together with its task record,
// and the request's Idempotency-Key with them: a repeat of a request that
// committed gets the task it recorded (see idempotency.go).
func (s *Server) submit(ctx context.Context, txn *store.Txn, t *api.Task) (*api.Task, error) {
	if t.Metadata.ID == "" {
		t.Metadata.ID = store.NewID()
	}
	if err := s.claimIdempotencyKey(ctx, txn, t); err != nil {
		return nil, err
	}
	rev, err := txn.Create(t).Commit(ctx)
	if err != nil {
		return s.settleClaim(ctx, err)
	}
	committed(ctx)
	t.Metadata.Revision = rev
	// The caller's next read (on this server) must see what it just did.
	if err := s.cache.WaitRev(ctx, rev); err != nil {
		return nil, err
	}
	return t, nil
}

// GET /api/v1/tasks?state=&target=&limit=
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fail(w, api.Errorf(api.ErrInvalid, "limit must be a whole number, got %q", v))
			return
		}
		limit = n
	}
	state, target := q.Get("state"), q.Get("target")
	if state != "" && state != "active" && !api.TaskDone(state) && state != api.TaskQueued && state != api.TaskRunning {
		fail(w, api.Errorf(api.ErrInvalid, "state must be queued, running, active, succeeded, failed or canceled, got %q", state))
		return
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
	// Newest first; IDs are time-ordered.
	sort.Slice(items, func(i, j int) bool { return items[i].Metadata.ID > items[j].Metadata.ID })
	if limit > 0 && len(items) > limit {
		items = items[:limit]
	}
	reply(w, http.StatusOK, api.List[*api.Task]{Items: nonNil(items), Revision: s.cache.Rev()})
}

// GET /api/v1/tasks/{id}?wait=30s&after=REV waits until the task changes
// past revision REV (or finishes), for progress without polling; with
// done=true it waits for the end only.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	q := r.URL.Query()
	o, ok := s.cache.Get(api.KindTask, id)
	// A waiting client gets the change it waits for from the cache anyway;
	// others need the latest writes.
	if !ok || q.Get("wait") == "" {
		if err := s.cache.Sync(ctx); err != nil {
			fail(w, err)
			return
		}
		if o, ok = s.cache.Get(api.KindTask, id); !ok {
			fail(w, api.Errorf(api.ErrNotFound, "task %s not found", id))
			return
		}
	}
	untilDone, err := queryBool(r, "done")
	if err != nil {
		fail(w, err)
		return
	}
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > 5*time.Minute {
			fail(w, api.Errorf(api.ErrInvalid, "wait must be a duration up to 5m, like 30s, got %q", v))
			return
		}
		after := o.GetMeta().Revision
		if a := q.Get("after"); a != "" {
			if after, err = strconv.ParseInt(a, 10, 64); err != nil {
				fail(w, api.Errorf(api.ErrInvalid, "after must be a revision, got %q", a))
				return
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
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// opName names a task's operation: "portgroup.create", "vm.delete".
func opName(kind, verb string) string {
	return strings.TrimSuffix(kind, "s") + "." + verb
}
