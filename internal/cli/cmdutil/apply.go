package cmdutil

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// AddAsync gives a state-changing command its --async flag, read by Apply.
func AddAsync(cmd *cobra.Command, g *Globals) {
	cmd.Flags().BoolVar(&g.Async, "async", false, "print the task ID and return at once instead of waiting for the task")
}

// Change is one state-changing call as a command makes it.
type Change struct {
	// What is being done, to what: "create vm web1". Errors start with it.
	What string
	// Call makes the API call, which records a task.
	Call func(ctx context.Context, c *client.Client) (*api.Task, error)
	// Done is the line printed once the task succeeded; it may read the
	// changed object through c (ReadTarget).
	Done func(ctx context.Context, c *client.Client, t *api.Task) string
}

// failed says what failed, unless the server's message already does.
func (ch Change) failed(err error) error {
	if strings.HasPrefix(err.Error(), ch.What+":") {
		return err
	}
	return fmt.Errorf("%s: %w", ch.What, err)
}

// Apply makes the call and, unless --async, follows its task to the end,
// showing its progress on stderr, then prints the Done line. With --async
// it prints the task's ID. Errors start with ch.What.
func (g *Globals) Apply(ctx context.Context, ch Change) error {
	c, err := g.Client()
	if err != nil {
		return err
	}
	t, err := ch.Call(ctx, c)
	if err != nil {
		return ch.failed(err)
	}
	if g.Async {
		fmt.Fprintln(g.Stdout, t.Metadata.ID)
		return nil
	}
	if t, err = g.WaitTask(ctx, c, t); err != nil {
		return ch.failed(err)
	}
	fmt.Fprintln(g.Stdout, Safe(ch.Done(ctx, c, t)))
	return nil
}

// WaitTask waits for t to finish, showing its progress on stderr, and
// returns the finished task with its error if it did not succeed. Ctrl-C
// ends the wait, not the task.
func (g *Globals) WaitTask(ctx context.Context, c *client.Client, t *api.Task) (*api.Task, error) {
	if !api.TaskDone(t.State) { // inline changes come back finished
		// Ctrl-C stops the waiting, not the task: say how to pick it up again.
		sctx, stop := signal.NotifyContext(ctx, os.Interrupt)
		defer stop()
		p := newProgress(g.Stderr, t)
		final, err := c.WaitTask(sctx, t.Metadata.ID, p.update)
		p.finish()
		if final == nil || !api.TaskDone(final.State) {
			if sctx.Err() != nil && ctx.Err() == nil {
				return t, fmt.Errorf("stopped waiting for task %s; it goes on (follow it with: vdc task wait %s)", t.Metadata.ID, t.Metadata.ID)
			}
			return t, fmt.Errorf("wait for task %s: %w", t.Metadata.ID, err)
		}
		t = final
	}
	return t, taskError(t)
}

// taskError is the error of a finished task that did not succeed. It wraps
// the task's *api.Error so that errors.Is works on it.
func taskError(t *api.Task) error {
	switch {
	case t.State == api.TaskSucceeded:
		return nil
	case t.Error != nil:
		return fmt.Errorf("%w (task %s)", t.Error, t.Metadata.ID)
	}
	return fmt.Errorf("task %s %s", t.Metadata.ID, t.State)
}

// progress shows a task's progress while the CLI waits for it.
type progress interface {
	update(t *api.Task)
	finish()
}

// newProgress draws a bar on a terminal and plain lines elsewhere (logs, CI),
// where a bar's carriage returns would be noise.
func newProgress(w io.Writer, t *api.Task) progress {
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions(100,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetWidth(30),
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionSetRenderBlankState(true),
			progressbar.OptionSetDescription(taskLabel(t)),
		)
		return &barProgress{bar: bar}
	}
	return &lineProgress{w: w}
}

// taskLabel says what a task is doing: "vm.create web1: copying disk".
func taskLabel(t *api.Task) string {
	msg := t.Message
	if msg == "" {
		msg = t.State
	}
	return Safe(fmt.Sprintf("%s %s: %s", t.Op, t.Target.Name, msg))
}

type barProgress struct{ bar *progressbar.ProgressBar }

func (b *barProgress) update(t *api.Task) {
	b.bar.Describe(taskLabel(t))
	_ = b.bar.Set(t.Progress)
}

// finish clears the bar so that the summary or error stands alone.
func (b *barProgress) finish() { _ = b.bar.Clear() }

// lineProgress prints a line each time the progress or message changes.
type lineProgress struct {
	w    io.Writer
	last string
}

func (l *lineProgress) update(t *api.Task) {
	line := fmt.Sprintf("%3d%% %s", t.Progress, taskLabel(t))
	if line != l.last {
		fmt.Fprintln(l.w, line)
		l.last = line
	}
}

func (l *lineProgress) finish() {}

// ReadTarget reads the object a task changed, to report on it. ok is false
// when it cannot be read; the change itself succeeded, so that is no error.
func ReadTarget[T api.Object](ctx context.Context, c *client.Client, t *api.Task) (obj T, ok bool) {
	obj, err := client.Get[T](ctx, c, t.Target.Kind, t.Target.ID)
	return obj, err == nil
}
