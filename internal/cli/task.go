package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func newTaskCmd(g *globals) *cobra.Command {
	cmd := group(g, "task", "List, inspect and wait for tasks, the record of every change")
	cmd.AddCommand(newTaskLsCmd(g), newTaskInfoCmd(g), newTaskWaitCmd(g), newTaskCancelCmd(g))
	return cmd
}

func newTaskLsCmd(g *globals) *cobra.Command {
	var q client.TaskQuery
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List tasks, newest first",
		Example: "  vdc task ls\n  vdc task ls --state active\n  vdc task ls --target web1 --all -o json",
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if all && cmd.Flags().Changed("limit") {
				return fmt.Errorf("--all and --limit contradict each other: give one")
			}
			if all {
				q.Limit = 0 // the server's "no limit"
			} else if q.Limit < 1 {
				return fmt.Errorf("--limit must be at least 1, got %d (--all lists every task)", q.Limit)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			tasks, err := c.ListTasks(cmd.Context(), q)
			if err != nil {
				return fmt.Errorf("list tasks: %w", err)
			}
			return printList(g, tasks, taskColumns(time.Now()))
		},
	}
	cmd.Flags().StringVar(&q.State, "state", "", "only tasks in this state: queued, running, active (both), succeeded, failed or canceled")
	cmd.Flags().StringVar(&q.Target, "target", "", "only tasks on this object (name or ID)")
	cmd.Flags().IntVar(&q.Limit, "limit", 50, "at most this many tasks")
	cmd.Flags().BoolVar(&all, "all", false, "every task, without a limit")
	return cmd
}

func taskColumns(now time.Time) []column[*api.Task] {
	return []column[*api.Task]{
		{header: "id", value: func(t *api.Task) string { return t.Metadata.ID }},
		{header: "op", value: func(t *api.Task) string { return t.Op }},
		{header: "target", value: taskTarget},
		{header: "state", value: func(t *api.Task) string { return t.State }},
		{header: "progress", value: func(t *api.Task) string { return strconv.Itoa(t.Progress) + "%" }},
		{header: "owner", value: func(t *api.Task) string { return t.Owner }},
		{header: "age", value: func(t *api.Task) string { return age(now, taskCreated(t)) }},
		{header: "duration", value: func(t *api.Task) string { return taskDuration(t, now) }},
		{header: "message", value: taskMessage},
	}
}

// taskMessage is why a task failed, else what it is doing or what it
// did ("3 of 3 restarted").
func taskMessage(t *api.Task) string {
	if t.Error != nil {
		return truncate(t.Error.Message, 60)
	}
	return truncate(t.Message, 60)
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
	return shortDuration(end.Sub(*t.Started))
}

func newTaskInfoCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "info ID",
		Aliases: []string{"show"},
		Short:   "Show a task in detail",
		Example: "  vdc task info 01J9Z3...\n  vdc task info 01J9Z3... -o json",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.GetTask(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("read task %s: %w", args[0], err)
			}
			now := time.Now()
			return printInfo(g, t, func(v *infoView, t *api.Task) { taskInfo(v, t, now) })
		},
	}
}

func taskInfo(v *infoView, t *api.Task, now time.Time) {
	v.add("ID", t.Metadata.ID)
	v.add("Op", t.Op)
	v.add("Target", fmt.Sprintf("%s %s (%s)", kindName(t.Target.Kind), taskTarget(t), t.Target.ID))
	v.add("Owner", t.Owner)
	v.add("State", t.State)
	v.add("Progress", strconv.Itoa(t.Progress)+"%")
	v.add("Message", t.Message)
	if t.Error != nil {
		v.add("Error", fmt.Sprintf("%s (%s)", t.Error.Message, t.Error.Code))
	}
	v.add("Created", timeAndAge(now, taskCreated(t)))
	if t.Started != nil {
		v.add("Started", timeAndAge(now, *t.Started))
	}
	if t.Finished != nil {
		v.add("Finished", timeAndAge(now, *t.Finished))
	}
	v.add("Duration", taskDuration(t, now))
	v.add("Server", t.Server)
}

func newTaskWaitCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "wait ID",
		Short: "Wait for a task to finish; fail if the task failed",
		Long: `Wait for a task to finish, showing its progress on stderr. Exits 1 with the
task's error if it failed or was canceled. With -o json, prints the finished
task.`,
		Example: "  id=$(vdc vm create web1 --disk 10G --async)\n  vdc task wait $id",
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.GetTask(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("read task %s: %w", args[0], err)
			}
			t, werr := g.waitTask(cmd.Context(), c, t)
			if !api.TaskDone(t.State) { // waiting broke off: no final task to show
				return werr
			}
			if g.jsonOutput() {
				if err := writeJSON(g.stdout, t); err != nil {
					return err
				}
			} else if werr == nil {
				fmt.Fprintln(g.stdout, safe(fmt.Sprintf("task %s succeeded: %s %s", t.Metadata.ID, t.Op, taskTarget(t))))
			}
			if werr != nil {
				return fmt.Errorf("%s %s: %w", t.Op, taskTarget(t), werr)
			}
			return nil
		},
	}
}

func newTaskCancelCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued task, or a running one that can stop (a migration): it undoes what it did",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			var t api.Task
			if err := c.Do(cmd.Context(), client.Request{Method: "POST", Path: "/tasks/" + args[0] + "/cancel"}, &t); err != nil {
				return fmt.Errorf("cancel task %s: %w", args[0], err)
			}
			if g.async {
				fmt.Fprintln(g.stdout, safe(fmt.Sprintf("cancel of task %s (%s %s) asked for", args[0], t.Op, t.Target.Name)))
				return nil
			}
			final, err := c.WaitTask(cmd.Context(), args[0], nil)
			if final == nil {
				return err
			}
			fmt.Fprintln(g.stdout, safe(fmt.Sprintf("task %s (%s %s) %s", args[0], final.Op, final.Target.Name, final.State)))
			return nil
		},
	}
}
