package vmcmd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func newMigrateCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.MigrateRequest
	var bandwidth string
	var downtime time.Duration
	cmd := &cobra.Command{
		Use:   "migrate NAME (--host H | --datastore D | both)",
		Short: "Move a VM to another host and/or datastore, live while it runs (vMotion, storage vMotion)",
		Long: `Move a VM. A running VM moves live: its memory (and, with --datastore, its
disks) go host to host while the guest runs, encrypted with the hosts'
certificates unless --insecure; then it pauses for a moment (the downtime)
and goes on on the target. A powered-off VM is registered on the target
instead. --datastore alone moves the disks of a running VM on its host.
For slow links: --max-bandwidth, --compress zstd|xbzrle, --max-downtime,
--auto-converge. 'vdc task cancel ID' stops a move; the VM stays where it was.`,
		Example: `  vdc vm migrate web1 --host host-2
  vdc vm migrate web1 --datastore fast-ssd
  vdc vm migrate web1 --host dr-site-1 --datastore dr-ds --max-bandwidth 100MiB --compress zstd --auto-converge`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if bandwidth != "" {
				bw, err := cmdutil.ParseSizeFlag("--max-bandwidth", bandwidth, 1<<20, 1<<40)
				if err != nil {
					return err
				}
				req.MaxBandwidth = bw
			}
			if cmd.Flags().Changed("max-downtime") {
				if downtime <= 0 || downtime > time.Minute {
					return fmt.Errorf("--max-downtime must be between 1ms and 1m, got %s", downtime)
				}
				req.MaxDowntimeMs = int(downtime.Milliseconds())
			}
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: "migrate vm " + name,
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
					return c.Action(ctx, api.KindVM, name, "migrate", req)
				},
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var res api.MigrateResult
					if json.Unmarshal(t.Result, &res) != nil {
						return "vm " + name + " migrated"
					}
					return migrateSummary(name, res)
				},
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Host, "host", "", "host to move the VM to")
	f.StringVar(&req.Datastore, "datastore", "", "datastore to move the VM's disks to")
	f.StringSliceVar(&req.Disks, "disk", nil, "with --datastore: only these disks (disk0,disk1...)")
	f.StringVar(&bandwidth, "max-bandwidth", "", "cap the stream, per second (e.g. 100MiB)")
	f.StringVar(&req.Compress, "compress", "", "compress the stream: zstd (multifd) or xbzrle")
	f.DurationVar(&downtime, "max-downtime", 300*time.Millisecond, "longest pause allowed for the switch-over")
	f.BoolVar(&req.AutoConverge, "auto-converge", false, "slow down a guest that dirties memory faster than it can be sent")
	f.IntVar(&req.Multifd, "multifd", 0, "send over this many connections")
	f.BoolVar(&req.Insecure, "insecure", false, "do not encrypt the stream between the hosts")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

// migrateSummary says what a migration did: a move of the disks alone
// sent no memory and paused nothing, and says so by not claiming it.
func migrateSummary(name string, res api.MigrateResult) string {
	took := time.Duration(res.TotalMs) * time.Millisecond
	disks := ""
	if len(res.Disks) > 0 {
		disks = fmt.Sprintf("moved %s to datastore %s", strings.Join(res.Disks, ", "), res.Datastore.Name)
		if res.DiskBytes > 0 {
			disks += fmt.Sprintf(", %s copied", res.DiskBytes)
		}
	}
	sameHost := res.From.ID == res.To.ID
	if sameHost && disks == "" {
		disks = "disks moved"
	}
	switch {
	case sameHost && !res.Live:
		return fmt.Sprintf("vm %s: %s (powered off)", name, disks)
	case sameHost:
		return fmt.Sprintf("vm %s: %s in %s, live on %s", name, disks, took, res.To.Name)
	case !res.Live && disks != "":
		return fmt.Sprintf("vm %s moved to %s (powered off); %s", name, res.To.Name, disks)
	case !res.Live:
		return fmt.Sprintf("vm %s moved to %s (powered off)", name, res.To.Name)
	}
	passes := "passes"
	if res.Passes == 1 {
		passes = "pass"
	}
	s := fmt.Sprintf("vm %s migrated live to %s in %s, downtime %d ms, %s of memory sent in %d %s",
		name, res.To.Name, took, res.DowntimeMs, res.Transferred, res.Passes, passes)
	if disks != "" {
		s += "; " + disks
	}
	return s
}
