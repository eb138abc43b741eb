package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func newTaskCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "task", "List, inspect and wait for tasks, the record of every change")
	cmd.AddCommand(newTaskLsCmd(g), newTaskInfoCmd(g), newTaskWaitCmd(g), newTaskCancelCmd(g))
	return cmd
}

func newTaskLsCmd(g *cmdutil.Globals) *cobra.Command {
	var q client.TaskQuery
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tasks, newest first",
		Example: "  vdc task ls\n  vdc task ls --state active\n  vdc task ls --target web1 --all -o json",
		Args:    cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all && cmd.Flags().Changed("limit") {
				return fmt.Errorf("--all and --limit contradict each other: give one")
			}
			if all {
				q.Limit = 0 // the server's "no limit"
			} else if q.Limit < 1 {
				return fmt.Errorf("--limit must be at least 1, got %d (--all lists every task)", q.Limit)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			tasks, err := c.ListTasks(cmd.Context(), q)
			if err != nil {
				return fmt.Errorf("list tasks: %w", err)
			}
			return cmdutil.PrintList(g, tasks, taskColumns(time.Now()))
		},
	}
	cmd.Flags().StringVar(&q.State, "state", "", "only tasks in this state: queued, running, active (both), succeeded, failed or canceled")
	cmd.Flags().StringVar(&q.Target, "target", "", "only tasks on this object (name or ID)")
	cmd.Flags().IntVar(&q.Limit, "limit", 50, "at most this many tasks")
	cmd.Flags().BoolVar(&all, "all", false, "every task, without a limit")
	return cmd
}

func taskColumns(now time.Time) []cmdutil.Column[*api.Task] {
	return []cmdutil.Column[*api.Task]{
		{Header: "id", Value: func(t *api.Task) string { return t.Metadata.ID }},
		{Header: "op", Value: func(t *api.Task) string { return t.Op }},
		{Header: "target", Value: taskTarget},
		{Header: "state", Value: func(t *api.Task) string { return t.State }},
		{Header: "progress", Value: func(t *api.Task) string { return strconv.Itoa(t.Progress) + "%" }},
		{Header: "owner", Value: func(t *api.Task) string { return t.Owner }},
		{Header: "age", Value: func(t *api.Task) string { return cmdutil.Age(now, taskCreated(t)) }},
		{Header: "duration", Value: func(t *api.Task) string { return taskDuration(t, now) }},
		{Header: "message", Value: taskMessage},
	}
}

// taskMessage is why a task failed, else what it is doing or what it
// did ("3 of 3 restarted").
func taskMessage(t *api.Task) string {
	if t.Error != nil {
		return cmdutil.Truncate(t.Error.Message, 60)
	}
	return cmdutil.Truncate(t.Message, 60)
}

// taskTarget names the target, by ID when it has no name.
func taskTarget(t *api.Task) string {
	if t.Target.Name != "" {
		return t.Target.Name
	}
	return t.Target.ID
}

func taskCreated(t *api.Task) time.Time {
	if t.Metadata.Created.IsZero() && t.Started != nil {
		return *t.Started
	}
	return t.Metadata.Created
}

// taskDuration is how long the task ran, or runs so far; empty before it starts.
func taskDuration(t *api.Task, now time.Time) string {
	if t.Started == nil {
		return ""
	}
	end := now
	if t.Finished != nil {
		end = *t.Finished
	}
	return cmdutil.ShortDuration(end.Sub(*t.Started))
}

func newTaskInfoCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "info ID",
		Aliases: []string{"show"},
		Short:   "Show a task in detail",
		Example: "  vdc task info 01J9Z3...\n  vdc task info 01J9Z3... -o json",
		Args:    cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			t, err := c.GetTask(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("read task %s: %w", args[0], err)
			}
			now := time.Now()
			return cmdutil.PrintInfo(g, t, func(v *cmdutil.InfoView, t *api.Task) { taskInfo(v, t, now) })
		},
	}
}

func taskInfo(v *cmdutil.InfoView, t *api.Task, now time.Time) {
	v.Add("ID", t.Metadata.ID)
	v.Add("Op", t.Op)
	v.Add("Target", fmt.Sprintf("%s %s (%s)", cmdutil.KindName(t.Target.Kind), taskTarget(t), t.Target.ID))
	v.Add("Owner", t.Owner)
	v.Add("State", t.State)
	v.Add("Progress", strconv.Itoa(t.Progress)+"%")
	v.Add("Message", t.Message)
	if t.Error != nil {
		v.Add("Error", fmt.Sprintf("%s (%s)", t.Error.Message, t.Error.Code))
	}
	v.Add("Created", cmdutil.TimeAndAge(now, taskCreated(t)))
	if t.Started != nil {
		v.Add("Started", cmdutil.TimeAndAge(now, *t.Started))
	}
	if t.Finished != nil {
		v.Add("Finished", cmdutil.TimeAndAge(now, *t.Finished))
	}
	v.Add("Duration", taskDuration(t, now))
	v.Add("Server", t.Server)
}

func newTaskWaitCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for a task to finish; fail if the task failed",
		Long: `Wait for a task to finish, showing its progress on stderr. Exits 1 with the
task's error if it failed or was canceled. With -o json, prints the finished
task.`,
		Example: "  id=$(vdc vm create web1 --disk 10G --async)\n  vdc task wait $id",
		Args:    cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			t, err := c.GetTask(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("read task %s: %w", args[0], err)
			}
			t, werr := g.WaitTask(cmd.Context(), c, t)
			if !api.TaskDone(t.State) { // waiting broke off: no final task to show
				return werr
			}
			if g.JSONOutput() {
				if err := cmdutil.WriteJSON(g.Stdout, t); err != nil {
					return err
				}
			} else if werr == nil {
				fmt.Fprintln(g.Stdout, cmdutil.Safe(fmt.Sprintf("task %s succeeded: %s %s", t.Metadata.ID, t.Op, taskTarget(t))))
			}
			if werr != nil {
				return fmt.Errorf("%s %s: %w", t.Op, taskTarget(t), werr)
			}
			return nil
		},
	}
}

func newTaskCancelCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued task, or a running one that can stop (a migration): it undoes what it did",
		Args:  cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			var t api.Task
			if err := c.Do(cmd.Context(), client.Request{Method: "POST", Path: "/tasks/" + args[0] + "/cancel"}, &t); err != nil {
				return fmt.Errorf("cancel task %s: %w", args[0], err)
			}
			if g.Async {
				fmt.Fprintln(g.Stdout, cmdutil.Safe(fmt.Sprintf("cancel of task %s (%s %s) asked for", args[0], t.Op, t.Target.Name)))
				return nil
			}
			final, err := c.WaitTask(cmd.Context(), args[0], nil)
			if final == nil {
				return err
			}
			fmt.Fprintln(g.Stdout, cmdutil.Safe(fmt.Sprintf("task %s (%s %s) %s", args[0], final.Op, final.Target.Name, final.State)))
			return nil
		},
	}
}
