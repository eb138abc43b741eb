package inventorycmd

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func NewHostCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Host]{
		Kind: api.KindHost, Singular: "host", Plural: "hosts", Use: "host",
		Short: "Manage hypervisor hosts (they join with 'vdc host token create' and 'vdc agent')",
		Columns: func(now time.Time) []cmdutil.Column[*api.Host] {
			return []cmdutil.Column[*api.Host]{
				{Header: "name", Value: func(h *api.Host) string { return h.Metadata.Name }},
				{Header: "state", Value: hostState},
				{Header: "last heartbeat", Value: func(h *api.Host) string { return cmdutil.Age(now, h.Status.LastHeartbeat) }},
				{Header: "cpu", Value: func(h *api.Host) string { return cmdutil.UsedOf(h.Status.UsedCPUs, h.Status.CPUs) }},
				{Header: "memory", Value: func(h *api.Host) string { return cmdutil.UsedOf(h.Status.UsedMemory, h.Status.MemoryBytes) }},
				{Header: "vms", Value: func(h *api.Host) string { return strconv.Itoa(h.Status.VMs) }},
				{Header: "driver", Value: cmdutil.HostDriver},
				{Header: "version", Value: func(h *api.Host) string { return h.Status.Version }},
				{Header: "cluster", Value: func(h *api.Host) string { return h.Spec.Cluster.String() }},
			}
		},
		Info: func(v *cmdutil.InfoView, h *api.Host, now time.Time) {
			cmdutil.MetaInfo(v, &h.Metadata, now)
			v.Add("Cluster", h.Spec.Cluster.String())
			v.Add("State", hostState(h))
			v.Add("Connected since", cmdutil.TimeAndAge(now, h.Status.ConnectedSince))
			v.Add("Last heartbeat", cmdutil.TimeAndAge(now, h.Status.LastHeartbeat))
			v.Add("Address", h.Status.Address)
			v.Add("Hostname", h.Status.Hostname)
			v.Add("Driver", cmdutil.HostAccel(h))
			v.Add("Version", h.Status.Version)
			v.Add("CPU", cmdutil.UsedOf(h.Status.UsedCPUs, h.Status.CPUs)+" (vCPUs of powered-on VMs/physical)")
			v.Add("Memory", cmdutil.UsedOf(h.Status.UsedMemory, h.Status.MemoryBytes))
			v.Add("VMs", strconv.Itoa(h.Status.VMs))
			v.Add("Datastores", cmdutil.Refs(h.Status.Datastores))
			v.Add("Certificate", hostCert(h, now))
		},
		ListFlags: func(cmd *cobra.Command) func() (url.Values, error) {
			cluster := cmd.Flags().String("cluster", "", "only the hosts of this cluster")
			return func() (url.Values, error) {
				if *cluster == "" {
					return nil, nil
				}
				return url.Values{"cluster": {*cluster}}, nil
			}
		},
		Update: func(cmd *cobra.Command) func() (any, error) {
			m := cmdutil.AddMetaFlags(cmd, true, false)
			cluster := cmd.Flags().String("cluster", "", "move the host to this cluster (it must have no VMs)")
			return func() (any, error) {
				mc, err := m.Change("host")
				return api.HostUpdateRequest{Name: mc.Name, Labels: mc.Labels, Cluster: cmdutil.Changed(cmd, "cluster", *cluster)}, err
			}
		},
		UpdateExample: "  vdc host update esx1 --cluster prod --label rack=r12",
	}
	maint := cmdutil.Group(g, "maintenance", "Put a host in or out of maintenance: no new VMs and no power-ons there")
	for _, action := range []string{api.MaintenanceEnter, api.MaintenanceExit} {
		maint.AddCommand(newMaintenanceCmd(g, action))
	}
	token := cmdutil.Group(g, "token", "Make join tokens for new hosts")
	token.AddCommand(newTokenCreateCmd(g))
	return d.Command(g, maint, token, newReplaceCmd(g))
}

// hostState is the connection state, and maintenance when the host is in it.
func hostState(h *api.Host) string {
	s := h.Status.Connection
	if !h.Status.FailedAt.IsZero() {
		s = "failed (HA)"
	}
	if h.Spec.Maintenance {
		s += " (maintenance)"
	}
	return s
}

// hostCert says which certificate the server accepts from the host.
func hostCert(h *api.Host, now time.Time) string {
	c := h.Status.Certificate
	switch {
	case c == nil:
		return "not tracked yet (joined before certificates were; recorded at its next call)"
	case c.Serial == "":
		return "revoked " + cmdutil.TimeAndAge(now, c.Revoked) + " (vdc host replace): the host is refused until it joins again"
	}
	return fmt.Sprintf("serial %s, expires %s (renewed by the host)", c.Serial, cmdutil.TimeAndAge(now, c.NotAfter))
}

func newMaintenanceCmd(g *cmdutil.Globals, action string) *cobra.Command {
	short := map[string]string{
		api.MaintenanceEnter: "Put a host in maintenance (its VMs must be stopped or moved first)",
		api.MaintenanceExit:  "Take a host out of maintenance",
	}[action]
	cmd := &cobra.Command{
		Use:     action + " NAME",
		Short:   short,
		Example: fmt.Sprintf("  vdc host maintenance %s esx1", action),
		Args:    cmdutil.ExactArgs(1),
	}
	cmdutil.AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		return g.Apply(cmd.Context(), cmdutil.Change{
			What: fmt.Sprintf("%s maintenance on host %s", action, name),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Action(ctx, api.KindHost, name, "maintenance", api.MaintenanceRequest{Action: action})
			},
			Done: func(context.Context, *client.Client, *api.Task) string {
				if action == api.MaintenanceEnter {
					return fmt.Sprintf("host %s is in maintenance", name)
				}
				return fmt.Sprintf("host %s is out of maintenance", name)
			},
		})
	}
	return cmd
}

func newTokenCreateCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.JoinTokenRequest
	ttl := 24 * time.Hour
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make a join token; a new host presents it once to join",
		Long: `Make a join token and print it. On the new host, run
  vdc agent --server URL --join-token-file FILE --data DIR --name NAME
with the token in FILE (mode 0600), or in VDC_JOIN_TOKEN. The token also lets the host check the server's certificate before it has any.
A token makes new hosts only: to join a machine as an existing host again,
use 'vdc host replace NAME'.`,
		Example: "  vdc host token create\n  vdc host token create --uses 10 --ttl 1h --cluster prod",
		Args:    cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Uses < 1 {
				return fmt.Errorf("--uses must be at least 1, got %d", req.Uses)
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl must be above 0, got %s", ttl)
			}
			req.TTLSeconds = int(math.Ceil(ttl.Seconds()))
			c, err := g.Client()
			if err != nil {
				return err
			}
			t, err := c.CreateJoinToken(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("create join token: %w", err)
			}
			if g.JSONOutput() {
				return cmdutil.WriteJSON(g.Stdout, t)
			}
			fmt.Fprintln(g.Stdout, cmdutil.Safe(t.Token))
			// The how-to goes to stderr so that TOKEN=$(vdc host token create) works.
			into := "the default cluster"
			if !t.Cluster.IsZero() {
				into = "cluster " + cmdutil.Safe(t.Cluster.String())
			}
			fmt.Fprintf(g.Stderr, "Join token for %d host(s) into %s, valid until %s. On each new host, put it in a file only root reads and run:\n"+
				"  vdc agent --server %s --join-token-file FILE --data DIR --name NAME\n",
				t.Uses, into, t.Expires.Local().Format("2006-01-02 15:04 MST"), c.URL())
			return nil
		},
	}
	cmd.Flags().IntVar(&req.Uses, "uses", 1, "how many hosts may join with it")
	cmd.Flags().DurationVar(&ttl, "ttl", ttl, "how long it is valid")
	cmd.Flags().StringVar(&req.Cluster, "cluster", "", "cluster the hosts join (default: the only one)")
	return cmd
}

func newReplaceCmd(g *cmdutil.Globals) *cobra.Command {
	ttl := time.Hour
	cmd := &cobra.Command{
		Use:   "replace NAME",
		Short: "Revoke a host's certificate and make a one-use token to join a machine as that host again",
		Long: `Revoke the host's certificate at once (the server refuses its agent from now
on, heartbeats included) and print a join token, valid once and for --ttl,
that joins a machine as this host: it keeps the host's ID, cluster and VMs.
Use it for a reinstalled machine, one whose data dir was lost, or one whose
keys may have leaked. On the machine run
  vdc agent --server URL --join-token-file FILE --data DIR --name NAME
with the token in FILE (mode 0600), or in VDC_JOIN_TOKEN. An agent that still
has its data dir joins with it as soon as the server refuses its old
certificate. A second replace makes the first token worthless.`,
		Example: "  vdc host replace esx1\n  TOKEN=$(vdc host replace esx1 --ttl 15m)",
		Args:    cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < time.Second || ttl > 7*24*time.Hour {
				return fmt.Errorf("--ttl must be between 1s and 168h, got %s", ttl)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			r, err := c.ReplaceHost(cmd.Context(), args[0], api.HostReplaceRequest{TTLSeconds: int(math.Ceil(ttl.Seconds()))})
			if err != nil {
				return fmt.Errorf("replace host %s: %w", args[0], err)
			}
			if g.JSONOutput() {
				return cmdutil.WriteJSON(g.Stdout, r)
			}
			fmt.Fprintln(g.Stdout, cmdutil.Safe(r.Token.Token))
			// The how-to goes to stderr so that TOKEN=$(vdc host replace H) works.
			fmt.Fprintf(g.Stderr, "The certificate of host %s is revoked: its agent is refused from now on.\n"+
				"This token joins one machine as host %s (ID %s, its VMs kept) until %s. On that machine, put it in a file only root reads and run:\n"+
				"  vdc agent --server %s --join-token-file FILE --data DIR --name %s\n",
				cmdutil.Safe(r.Host.Name), cmdutil.Safe(r.Host.Name), cmdutil.Safe(r.Host.ID), r.Token.Expires.Local().Format("2006-01-02 15:04 MST"), c.URL(), cmdutil.Safe(r.Host.Name))
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", ttl, "how long the token is valid")
	return cmd
}
