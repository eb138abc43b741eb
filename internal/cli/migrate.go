package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func newMigrateCmd(g *globals) *cobra.Command {
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
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if bandwidth != "" {
				bw, err := parseSizeFlag("--max-bandwidth", bandwidth, 1<<20, 1<<40)
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
			return g.apply(cmd.Context(), change{
				what: "migrate vm " + name,
				call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
					return c.Action(ctx, api.KindVM, name, "migrate", req)
				},
				done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var res api.MigrateResult
					if json.Unmarshal(t.Result, &res) != nil {
						return "vm " + name + " migrated"
					}
					if !res.Live {
						return fmt.Sprintf("vm %s moved to %s (powered off)", name, res.To.Name)
					}
					return fmt.Sprintf("vm %s migrated live to %s in %s, downtime %d ms, %s sent in %d passes",
						name, res.To.Name, time.Duration(res.TotalMs)*time.Millisecond, res.DowntimeMs, res.Transferred, res.Passes)
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
	addAsync(cmd, g)
	return cmd
}
