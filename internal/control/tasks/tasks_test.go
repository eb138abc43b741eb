package tasks_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fixture is a runner on a fresh store, its writes unfenced.
type fixture struct {
	st  *state.State
	r   *tasks.Runner
	sub *tasks.Submitter
}

func newFixture(t *testing.T) *fixture {
	st := statetest.New(t)
	return &fixture{st: st, r: tasks.NewRunner(st, st.Store.Txn, "test", quiet), sub: &tasks.Submitter{State: st}}
}

func (f *fixture) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); f.r.Wait() })
	f.r.Start(ctx)
}

// vm makes a VM in the store for tasks to target.
func (f *fixture) vm(t *testing.T) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "vm-" + fmt.Sprint(time.Now().UnixNano())}}
	rev, err := f.st.Store.Create(context.Background(), vm)
	if err != nil {
		t.Fatal(err)
	}
	vm.Metadata.Revision = rev
	return vm
}

func (f *fixture) submit(t *testing.T, ctx context.Context, op string, target api.Object) *api.Task {
	tk, err := f.sub.Submit(ctx, f.st.Store.Txn(), tasks.New(ctx, op, target, nil))
	if err != nil {
		t.Fatalf("submit %s: %v", op, err)
	}
	return tk
}

// waitState returns the task once keep accepts it.
func (f *fixture) waitFor(t *testing.T, id string, keep func(*api.Task) bool) *api.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rev int64
	for {
		if tk, ok := state.Get[*api.Task](f.st, id); ok {
			if keep(tk) {
				return tk
			}
			rev = tk.Metadata.Revision
		}
		if _, err := f.st.Cache.WaitChange(ctx, api.KindTask, id, rev); err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
	}
}

func (f *fixture) wait(t *testing.T, id string) *api.Task {
	return f.waitFor(t, id, func(tk *api.Task) bool { return api.TaskDone(tk.State) })
}

// A task's recorded percent never goes back, whatever a step reports (a
// pass of a migration that finds more dirty memory, a resumed task that
// counts again from its start).
func TestProgressNeverGoesBack(t *testing.T) {
	f := newFixture(t)
	f.r.Register("test.progress", tasks.Handler{Run: func(ctx context.Context, run *tasks.Run) (any, error) {
		run.Announce(ctx, 40, "memory 400 MiB sent, pass 1")
		run.Announce(ctx, 20, "memory 600 MiB sent, pass 2")
		got, err := state.Read[*api.Task](ctx, f.st, run.Task.Metadata.ID)
		if err != nil {
			return nil, err
		}
		return fmt.Sprintf("%d%% %s", got.Progress, got.Message), nil
	}})
	f.start(t)
	tk := f.wait(t, f.submit(t, context.Background(), "test.progress", f.vm(t)).Metadata.ID)
	if tk.State != api.TaskSucceeded || string(tk.Result) != `"40% memory 600 MiB sent, pass 2"` {
		t.Fatalf("after 40%% then 20%%: %s %s %v", tk.State, tk.Result, tk.Error)
	}
}

// What a task stages commits with its outcome, failed or not; its owner is
// the user the request acted for.
func TestStagedChangesCommitWithTheOutcome(t *testing.T) {
	f := newFixture(t)
	f.r.Register("test.fail", tasks.Handler{Run: func(ctx context.Context, run *tasks.Run) (any, error) {
		run.Stage(api.KindVM, run.Task.Target.ID, func(o api.Object) error {
			o.(*api.VM).Status.Phase = api.PhaseReady
			return nil
		})
		return nil, api.Errorf(api.ErrConflict, "host h1 refused")
	}})
	f.start(t)
	vm := f.vm(t)
	ctx := auth.With(context.Background(), auth.Principal{User: "alice"})
	tk := f.wait(t, f.submit(t, ctx, "test.fail", vm).Metadata.ID)
	if tk.State != api.TaskFailed || tk.Error == nil || !strings.Contains(tk.Error.Message, "host h1 refused") || tk.Owner != "alice" {
		t.Fatalf("task: %s, error %v, owner %q", tk.State, tk.Error, tk.Owner)
	}
	got, err := state.Read[*api.VM](context.Background(), f.st, vm.Metadata.ID)
	if err != nil || got.Status.Phase != api.PhaseReady {
		t.Fatalf("staged phase not recorded: %v %+v", err, got)
	}
}

// A running cancelable task ends canceled when a user asks; one of an
// unknown op fails saying so.
func TestCancelAndUnknownOp(t *testing.T) {
	f := newFixture(t)
	f.r.Register("test.block", tasks.Handler{Cancelable: true, Run: func(ctx context.Context, run *tasks.Run) (any, error) {
		run.Note(ctx, "blocking")
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	f.start(t)
	tk := f.submit(t, context.Background(), "test.block", f.vm(t))
	f.waitFor(t, tk.Metadata.ID, func(tk *api.Task) bool { return tk.State == api.TaskRunning })
	err := state.Update(context.Background(), f.st, nil, tk.Metadata.ID, func(tk *api.Task) error {
		tk.CancelRequested = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.wait(t, tk.Metadata.ID); got.State != api.TaskCanceled {
		t.Fatalf("canceled task ended %s", got.State)
	}
	unknown := f.wait(t, f.submit(t, context.Background(), "test.nobody", f.vm(t)).Metadata.ID)
	if unknown.State != api.TaskFailed || !strings.Contains(unknown.Error.Message, `does not know how to run "test.nobody"`) {
		t.Fatalf("unknown op: %s %v", unknown.State, unknown.Error)
	}
}

// A task a previous leader left running is resumed when its handler is
// resumable and failed with the handler's reason otherwise.
func TestResumeAfterLeaderChange(t *testing.T) {
	f := newFixture(t)
	f.r.Register("test.resumable", tasks.Handler{Resumable: true, Run: func(ctx context.Context, run *tasks.Run) (any, error) {
		return run.Resumed, nil
	}})
	f.r.Register("test.once", tasks.Handler{Interrupted: "the VM may or may not have been reset", Run: func(context.Context, *tasks.Run) (any, error) {
		return nil, nil
	}})
	left := func(op string) *api.Task {
		tk := tasks.New(context.Background(), op, f.vm(t), nil)
		tk.State = api.TaskRunning
		if _, err := f.st.Store.Create(context.Background(), tk); err != nil {
			t.Fatal(err)
		}
		return tk
	}
	a, b := left("test.resumable"), left("test.once")
	if err := f.st.Cache.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.start(t)
	if got := f.wait(t, a.Metadata.ID); got.State != api.TaskSucceeded || string(got.Result) != "true" {
		t.Fatalf("resumable task: %s %s", got.State, got.Result)
	}
	if got := f.wait(t, b.Metadata.ID); got.State != api.TaskFailed || !strings.Contains(got.Error.Message, "interrupted") || !strings.Contains(got.Error.Message, "may or may not have been reset") {
		t.Fatalf("non-resumable task: %s %v", got.State, got.Error)
	}
}
