package vmcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func newSnapshotCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "snapshot", "Take, list, revert to and delete a VM's snapshots", "snap")
	cmd.AddCommand(newSnapshotCreateCmd(g), newSnapshotLsCmd(g), newSnapshotRevertCmd(g), newSnapshotRmCmd(g))
	return cmd
}

func newSnapshotCreateCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.SnapshotCreateRequest
	cmd := &cobra.Command{
		Use:   "create VM SNAPSHOT",
		Short: "Snapshot a VM, running or not",
		Long: `Freeze the VM's disks as they are now: the VM goes on in new thin
overlays (external qcow2 snapshots), so taking one costs no copy whatever
the disks hold. --memory also saves a running VM's RAM and device state
(the guest pauses while it is written), so that a revert brings it back
running where it was. --quiesce freezes the guest's file systems through
its agent while the disks switch, when the agent answers.`,
		Example: `  vdc vm snapshot create web1 before-upgrade
  vdc vm snapshot create web1 live --memory --quiesce`,
		Args: cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm := args[0]
			req.Name = args[1]
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("snapshot vm %s", vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.CreateSnapshot(ctx, vm, req) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var res api.SnapshotResult
					_ = json.Unmarshal(t.Result, &res)
					s := fmt.Sprintf("snapshot %s of vm %s taken", req.Name, vm)
					if res.Quiesced {
						s += " (file systems frozen)"
					}
					if res.Note != "" {
						s += "; " + res.Note
					}
					return s
				},
			})
		},
	}
	cmd.Flags().BoolVar(&req.Memory, "memory", false, "save the running VM's memory too: a revert resumes it")
	cmd.Flags().BoolVar(&req.Quiesce, "quiesce", false, "freeze the guest's file systems through its agent while the disks switch")
	cmd.Flags().StringVar(&req.Description, "description", "", "what the snapshot is for")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

func newSnapshotLsCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls VM",
		Short:   "Show a VM's snapshots as a tree; 'you are here' marks where its current state descends from",
		Example: "  vdc vm snapshot ls web1\n  vdc vm snapshot ls web1 -o json",
		Args:    cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			snaps, err := c.Snapshots(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("list snapshots of vm %s: %w", args[0], err)
			}
			if g.JSONOutput() {
				return cmdutil.WriteJSON(g.Stdout, nonNilSlice(snaps))
			}
			vm, err := c.GetVM(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return writeSnapshotTree(g.Stdout, args[0], snaps, vm.Spec.CurrentSnapshotID, time.Now())
		},
	}
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// writeSnapshotTree prints snapshots under their parents, as vSphere's
// snapshot manager shows them; current is the ID of the snapshot the
// current state descends from. A damaged tree (a cycle) is an error, not
// a walk without end.
func writeSnapshotTree(w io.Writer, vm string, snaps []api.VMSnapshot, current string, now time.Time) error {
	if len(snaps) == 0 {
		fmt.Fprintln(w, "no snapshots")
		return nil
	}
	if err := api.CheckSnapshotTree(snaps); err != nil {
		return fmt.Errorf("list snapshots of vm %s: %w", vm, err)
	}
	ids, named := map[string]bool{}, map[string]int{}
	for _, s := range snaps {
		ids[s.ID] = true
		named[s.Name]++
	}
	kids := map[string][]api.VMSnapshot{}
	for _, s := range snaps {
		parent := s.ParentID
		if !ids[parent] {
			parent = "" // a root, or under one the server did not send
		}
		kids[parent] = append(kids[parent], s)
	}
	printed := map[string]bool{}
	var walk func(parent, indent string)
	walk = func(parent, indent string) {
		list := kids[parent]
		for i, s := range list {
			if printed[s.ID] {
				continue
			}
			printed[s.ID] = true
			branch, next := "├─ ", "│  "
			if i == len(list)-1 {
				branch, next = "└─ ", "   "
			}
			var tags []string
			if s.Memory {
				tags = append(tags, "memory")
			}
			if s.Quiesced {
				tags = append(tags, "quiesced")
			}
			tags = append(tags, s.PowerState, cmdutil.Age(now, s.Created))
			name := s.Name
			if named[name] > 1 { // from before names were unique: the ID tells them apart
				name += " [" + s.ID + "]"
			}
			line := fmt.Sprintf("%s%s%s (%s)", indent, branch, name, strings.Join(tags, ", "))
			if s.Description != "" {
				line += " " + s.Description
			}
			fmt.Fprintln(w, cmdutil.Safe(line))
			if s.ID == current {
				fmt.Fprintf(w, "%s%s└─ you are here\n", indent, next)
			}
			walk(s.ID, indent+next)
		}
	}
	walk("", "")
	return nil
}

func newSnapshotRevertCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revert VM SNAPSHOT",
		Short: "Put a VM back to a snapshot (what it holds since is discarded)",
		Long: `Put the VM back to the snapshot: its disks go back to what they held
then, in new overlays (the current state's files are discarded). A snapshot
taken with --memory brings the VM back running where it was; one without
leaves it powered off.`,
		Example: "  vdc vm snapshot revert web1 before-upgrade",
		Args:    cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, snap := args[0], args[1]
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("revert vm %s to snapshot %s", vm, snap),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.RevertSnapshot(ctx, vm, snap) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					s := fmt.Sprintf("vm %s reverted to snapshot %s", vm, snap)
					if v, ok := cmdutil.ReadTarget[*api.VM](ctx, c, t); ok {
						s += "; it is " + v.Status.PowerState
					}
					return s
				},
			})
		},
	}
	cmdutil.AddAsync(cmd, g)
	return cmd
}

func newSnapshotRmCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm VM SNAPSHOT",
		Aliases: []string{"delete"},
		Short:   "Delete a snapshot; its data merges into what depends on it, live while the VM runs",
		Example: "  vdc vm snapshot rm web1 before-upgrade",
		Args:    cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, snap := args[0], args[1]
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("delete snapshot %s of vm %s", snap, vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.DeleteSnapshot(ctx, vm, snap) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var res api.SnapshotResult
					_ = json.Unmarshal(t.Result, &res)
					s := fmt.Sprintf("snapshot %s of vm %s deleted", snap, vm)
					if len(res.Merged) > 0 {
						s += fmt.Sprintf(" (%d files merged)", len(res.Merged))
					}
					if res.Kept != "" {
						s += "; " + res.Kept
					}
					return s
				},
			})
		},
	}
	cmdutil.AddAsync(cmd, g)
	return cmd
}
