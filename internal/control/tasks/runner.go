// Package tasks is the task registry and runner. A request queues a task
// record (Submit) in the transaction that makes its change; the leader's
// Runner picks queued tasks up and runs their handlers (Register): tasks on
// one object one after another in the order they were queued, others in
// parallel. A handler reports progress, stages the changes it found out
// (they commit with the task's outcome) and is canceled, resumed after a
// leader change or failed with a reason as its Handler says.
//
// tasks depends on internal/control/state only; every domain package
// registers its handlers here.
package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// Handler does the work of one kind of task.
type Handler struct {
	Run func(ctx context.Context, t *Run) (result any, err error)
	// Resumable handlers can run again after a leader died half-way: they
	// check what is already done. The others are failed with a reason.
	Resumable bool
	// Interrupted says what may be left when a non-resumable task dies.
	Interrupted string
	// Cancelable handlers stop, undoing what they did, when a user cancels
	// them while they run (their ctx ends; Run.Canceled tells why).
	Cancelable bool
	// CanceledQueued undoes what the request itself left for the task
	// (files handed to it) when the task is canceled before it ran.
	CanceledQueued func(ctx context.Context, t *Run)
}

// Runner executes queued tasks on the leader.
type Runner struct {
	st     *state.State
	fence  func() *store.Txn
	server string
	log    *slog.Logger

	handlers map[string]Handler

	mu      sync.Mutex
	ctx     context.Context
	queues  map[string][]*api.Task // by target
	known   map[string]bool        // task IDs queued or running here
	running map[string]*Run        // by task ID
	wg      sync.WaitGroup
	sem     chan struct{}
}

// NewRunner makes the runner of server (its name goes in the tasks it
// runs). fence starts a transaction that commits only while this server
// leads: every write of a task's state goes through it.
func NewRunner(st *state.State, fence func() *store.Txn, server string, log *slog.Logger) *Runner {
	return &Runner{st: st, fence: fence, server: server, log: log, handlers: map[string]Handler{}, sem: make(chan struct{}, 64)}
}

// Register sets the handler of op's tasks.
func (r *Runner) Register(op string, h Handler) { r.handlers[op] = h }

// Handler returns op's handler.
func (r *Runner) Handler(op string) (Handler, bool) {
	h, ok := r.handlers[op]
	return h, ok
}

// Start runs tasks until ctx ends: the queued ones now and later, and the
// ones a previous leader left running.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	r.ctx = ctx
	r.queues = map[string][]*api.Task{}
	r.known = map[string]bool{}
	r.running = map[string]*Run{}
	r.mu.Unlock()
	_, cancel := r.st.Cache.Subscribe(func(ch store.Change) {
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
	pending := state.List(r.st, func(t *api.Task) bool { return t.State == api.TaskQueued || t.State == api.TaskRunning })
	sort.Slice(pending, func(i, j int) bool { return pending[i].Metadata.ID < pending[j].Metadata.ID })
	for _, t := range pending {
		r.enqueue(t)
	}
}

// Wait blocks until every task goroutine has stopped.
func (r *Runner) Wait() { r.wg.Wait() }

func targetKey(t *api.Task) string { return t.Target.Kind + "/" + t.Target.ID }

func (r *Runner) enqueue(t *api.Task) {
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
func (r *Runner) drain(ctx context.Context, key string) {
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

func (r *Runner) execute(ctx context.Context, t *api.Task) {
	log := r.log.With("task", t.Metadata.ID, "op", t.Op, "target", t.Target.Name)
	h, ok := r.handlers[t.Op]
	// Progress is first written a moment into the run: quick tasks need none.
	run := &Run{r: r, Task: t, Log: log, Resumed: t.State == api.TaskRunning, lastProgress: time.Now(), Leader: ctx}
	if !ok {
		r.finish(ctx, run, nil, fmt.Errorf("this server does not know how to run %q tasks", t.Op))
		return
	}
	if t.CancelRequested && t.State == api.TaskQueued {
		r.cancelQueued(ctx, run, h)
		return
	}
	if run.Resumed && !h.Resumable {
		r.finish(ctx, run, nil, fmt.Errorf("interrupted: the management server stopped while this task ran; %s", h.Interrupted))
		return
	}
	upd, ok := r.markRunning(ctx, run, h)
	if !ok {
		return
	}
	if run.Resumed {
		log.Info("resuming a task a previous leader left running")
	}
	start := time.Now()
	tctx, cancel := context.WithCancel(ctx)
	run.cancel = cancel
	// What a call to a host waits for (the host's agent restarting) shows
	// as the task's message.
	tctx = agent.WithNotice(tctx, func(msg string) { run.Note(tctx, msg) })
	r.mu.Lock()
	r.running[t.Metadata.ID] = run
	r.mu.Unlock()
	if upd.CancelRequested {
		cancel() // asked for between queueing and now
	}
	result, err := h.Run(tctx, run)
	userCanceled := run.Canceled(tctx)
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
		err = ErrCanceled
	}
	r.finish(ctx, run, result, err)
	log.Debug("task finished", "took", time.Since(start), "err", err)
}

// markRunning records that the task runs here. It returns false when the
// task is no longer to run (done, canceled, or the write failed).
func (r *Runner) markRunning(ctx context.Context, run *Run, h Handler) (*api.Task, bool) {
	var upd *api.Task
	stale := false
	err := retry.Conflicts(ctx, 0, func() error {
		if stale {
			// Changed since it was queued (a cancel request, most often):
			// no other change of it may come to queue it again, so go on
			// from the current version here.
			fresh, err := state.Read[*api.Task](ctx, r.st, run.Task.Metadata.ID)
			if err != nil {
				return retry.Stop(err)
			}
			run.Task = fresh
			if api.TaskDone(fresh.State) {
				return retry.Stop(errAlreadyEnded)
			}
			if fresh.CancelRequested && fresh.State == api.TaskQueued {
				r.cancelQueued(ctx, run, h)
				return retry.Stop(errAlreadyEnded)
			}
		}
		upd = store.Clone(run.Task)
		upd.State = api.TaskRunning
		upd.Server = r.server
		if upd.Started == nil {
			now := time.Now().UTC()
			upd.Started = &now
		}
		rev, err := r.fence().Update(run.Task, upd).Commit(ctx)
		stale = true
		upd.Metadata.Revision = rev
		return err
	})
	if err != nil {
		if err != errAlreadyEnded {
			run.Log.Warn("cannot start task", "err", err)
		}
		return nil, false
	}
	run.Task = upd
	return upd, true
}

// errAlreadyEnded stops markRunning: the task ended before it ran.
var errAlreadyEnded = errors.New("the task ended before it ran")

// cancelQueued ends a task canceled before it ran.
func (r *Runner) cancelQueued(ctx context.Context, run *Run, h Handler) {
	if h.CanceledQueued != nil {
		h.CanceledQueued(ctx, run)
	}
	r.finish(ctx, run, nil, ErrCanceled)
}

// finish records a task's outcome together with the changes the run
// staged, in one transaction that also lets go of the task's claims, then
// runs the run's after-hooks.
func (r *Runner) finish(ctx context.Context, run *Run, result any, err error) {
	defer func() {
		for _, fn := range run.afters {
			fn()
		}
	}()
	try := 0
	werr := retry.Conflicts(ctx, 5, func() error {
		if try++; try > 1 {
			cur, err := state.Read[*api.Task](ctx, r.st, run.Task.Metadata.ID)
			if err != nil {
				return retry.Stop(err)
			}
			run.Task = cur
		}
		upd := outcome(run, result, err)
		txn := r.fence()
		for _, c := range run.Task.Claims {
			txn.DeleteRaw(store.ClaimKey(c)) // the names are recorded, or free again
		}
		if serr := run.applyStaged(ctx, txn, try > 1); serr != nil {
			run.Log.Error("cannot record what the task changed", "err", serr)
		}
		_, err := txn.Update(run.Task, upd).Commit(ctx)
		return err
	})
	if werr != nil {
		run.Log.Error("cannot record task result", "err", werr)
	}
}

// outcome is the task's record once it ended with result or err.
func outcome(run *Run, result any, err error) *api.Task {
	upd := store.Clone(run.Task)
	now := time.Now().UTC()
	upd.Finished = &now
	if upd.Started == nil {
		upd.Started = &now
	}
	switch {
	case errors.Is(err, ErrCanceled):
		upd.State = api.TaskCanceled
		upd.Error, _ = api.ErrorFrom(err)
	case err != nil:
		upd.State = api.TaskFailed
		upd.Error, _ = api.ErrorFrom(err)
	default:
		upd.State = api.TaskSucceeded
		upd.Progress = 100
		upd.Message = run.Summary
		if result != nil {
			upd.Result, _ = json.Marshal(result)
		}
	}
	return upd
}
