package tasks

import (
	"context"
	"errors"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
)

// Children returns the unfinished tasks queued as children of this run's
// task (child.Parent is its ID): after a leader change, those the
// previous leader started, which go on by themselves.
func (t *Run) Children() []*api.Task {
	id := t.Task.Metadata.ID
	return state.List(t.r.st, func(c *api.Task) bool { return c.Parent == id && !api.TaskDone(c.State) })
}

// WaitChild waits for a child task to end: nil when it succeeded, else
// its error (ctx's when the wait was cut short). A cancel of this run's
// task asks the child to cancel too.
func (t *Run) WaitChild(ctx context.Context, child *api.Task) error {
	rev := child.Metadata.Revision
	for {
		o, err := t.r.st.Cache.WaitChange(ctx, api.KindTask, child.Metadata.ID, rev)
		if err != nil {
			if ctx.Err() != nil && t.Canceled(ctx) {
				cctx, cancel := t.CleanupCtx()
				_ = state.Update(cctx, t.r.st, nil, child.Metadata.ID, func(tk *api.Task) error {
					if !api.TaskDone(tk.State) {
						tk.CancelRequested = true
						return nil
					}
					return state.ErrUnchanged
				})
				cancel()
			}
			return err
		}
		tk := o.(*api.Task)
		rev = tk.Metadata.Revision
		if api.TaskDone(tk.State) {
			switch {
			case tk.State == api.TaskSucceeded:
				return nil
			case tk.Error != nil:
				return errors.New(tk.Error.Message)
			}
			return errors.New(tk.State)
		}
	}
}
