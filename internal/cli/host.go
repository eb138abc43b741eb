package cli

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
)

func newHostCmd(g *globals) *cobra.Command {
	d := &nounDef[*api.Host]{
		kind: api.KindHost, singular: "host", plural: "hosts", use: "host",
		short: "Manage hypervisor hosts (they join with 'vdc host token create' and 'vdc agent')",
		columns: func(now time.Time) []column[*api.Host] {
			return []column[*api.Host]{
				{header: "name", value: func(h *api.Host) string { return h.Metadata.Name }},
				{header: "state", value: hostState},
				{header: "last heartbeat", value: func(h *api.Host) string { return age(now, h.Status.LastHeartbeat) }},
				{header: "cpu", value: func(h *api.Host) string { return usedOf(h.Status.UsedCPUs, h.Status.CPUs) }},
				{header: "memory", value: func(h *api.Host) string { return usedOf(h.Status.UsedMemory, h.Status.MemoryBytes) }},
				{header: "vms", value: func(h *api.Host) string { return strconv.Itoa(h.Status.VMs) }},
				{header: "driver", value: hostDriver},
				{header: "version", value: func(h *api.Host) string { return h.Status.Version }},
				{header: "cluster", value: func(h *api.Host) string { return h.Spec.Cluster.String() }},
			}
		},
		info: func(v *infoView, h *api.Host, now time.Time) {
			metaInfo(v, &h.Metadata, now)
			v.add("Cluster", h.Spec.Cluster.String())
			v.add("State", hostState(h))
			v.add("Connected since", timeAndAge(now, h.Status.ConnectedSince))
			v.add("Last heartbeat", timeAndAge(now, h.Status.LastHeartbeat))
			v.add("Address", h.Status.Address)
			v.add("Hostname", h.Status.Hostname)
			v.add("Driver", hostAccel(h))
			v.add("Version", h.Status.Version)
			v.add("CPU", usedOf(h.Status.UsedCPUs, h.Status.CPUs)+" (vCPUs of powered-on VMs/physical)")
			v.add("Memory", usedOf(h.Status.UsedMemory, h.Status.MemoryBytes))
			v.add("VMs", strconv.Itoa(h.Status.VMs))
			v.add("Datastores", refs(h.Status.Datastores))
			v.add("Certificate", hostCert(h, now))
		},
		listFlags: func(cmd *cobra.Command) func() (url.Values, error) {
			cluster := cmd.Flags().String("cluster", "", "only the hosts of this cluster")
			return func() (url.Values, error) {
				if *cluster == "" {
					return nil, nil
				}
				return url.Values{"cluster": {*cluster}}, nil
			}
		},
		update: func(cmd *cobra.Command) func() (any, error) {
			m := addMetaFlags(cmd, true, false)
			cluster := cmd.Flags().String("cluster", "", "move the host to this cluster (it must have no VMs)")
			return func() (any, error) {
				mc, err := m.change("host")
				return api.HostUpdateRequest{Name: mc.name, Labels: mc.labels, Cluster: changed(cmd, "cluster", *cluster)}, err
			}
		},
		updateExample: "  vdc host update esx1 --cluster prod --label rack=r12",
	}
	maint := group(g, "maintenance", "Put a host in or out of maintenance: no new VMs and no power-ons there")
	for _, action := range []string{api.MaintenanceEnter, api.MaintenanceExit} {
		maint.AddCommand(newMaintenanceCmd(g, action))
	}
	token := group(g, "token", "Make join tokens for new hosts")
	token.AddCommand(newTokenCreateCmd(g))
	return d.command(g, maint, token, newReplaceCmd(g))
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
		return "revoked " + timeAndAge(now, c.Revoked) + " (vdc host replace): the host is refused until it joins again"
	}
	return fmt.Sprintf("serial %s, expires %s (renewed by the host)", c.Serial, timeAndAge(now, c.NotAfter))
}

// hostDriver is the driver with its acceleration: "qemu (kvm)".
func hostDriver(h *api.Host) string {
	s := h.Status.Driver
	if a := h.Status.Accel; a != "" && a != s {
		s += " (" + a + ")"
	}
	return s
}

func newMaintenanceCmd(g *globals, action string) *cobra.Command {
	short := map[string]string{
		api.MaintenanceEnter: "Put a host in maintenance (its VMs must be stopped or moved first)",
		api.MaintenanceExit:  "Take a host out of maintenance",
	}[action]
	cmd := &cobra.Command{
		Use:     action + " NAME",
		Short:   short,
		Example: fmt.Sprintf("  vdc host maintenance %s esx1", action),
		Args:    exactArgs(1),
	}
	addAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		return g.apply(cmd.Context(), change{
			what: fmt.Sprintf("%s maintenance on host %s", action, name),
			call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Action(ctx, api.KindHost, name, "maintenance", api.MaintenanceRequest{Action: action})
			},
			done: func(context.Context, *client.Client, *api.Task) string {
				if action == api.MaintenanceEnter {
					return fmt.Sprintf("host %s is in maintenance", name)
				}
				return fmt.Sprintf("host %s is out of maintenance", name)
			},
		})
	}
	return cmd
}

func newTokenCreateCmd(g *globals) *cobra.Command {
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
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if req.Uses < 1 {
				return fmt.Errorf("--uses must be at least 1, got %d", req.Uses)
			}
			if ttl <= 0 {
				return fmt.Errorf("--ttl must be above 0, got %s", ttl)
			}
			req.TTLSeconds = int(math.Ceil(ttl.Seconds()))
			c, err := g.client()
			if err != nil {
				return err
			}
			t, err := c.CreateJoinToken(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("create join token: %w", err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, t)
			}
			fmt.Fprintln(g.stdout, safe(t.Token))
			// The how-to goes to stderr so that TOKEN=$(vdc host token create) works.
			into := "the default cluster"
			if !t.Cluster.IsZero() {
				into = "cluster " + safe(t.Cluster.String())
			}
			fmt.Fprintf(g.stderr, "Join token for %d host(s) into %s, valid until %s. On each new host, put it in a file only root reads and run:\n"+
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

func newReplaceCmd(g *globals) *cobra.Command {
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
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl < time.Second || ttl > 7*24*time.Hour {
				return fmt.Errorf("--ttl must be between 1s and 168h, got %s", ttl)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			r, err := c.ReplaceHost(cmd.Context(), args[0], api.HostReplaceRequest{TTLSeconds: int(math.Ceil(ttl.Seconds()))})
			if err != nil {
				return fmt.Errorf("replace host %s: %w", args[0], err)
			}
			if g.jsonOutput() {
				return writeJSON(g.stdout, r)
			}
			fmt.Fprintln(g.stdout, safe(r.Token.Token))
			// The how-to goes to stderr so that TOKEN=$(vdc host replace H) works.
			fmt.Fprintf(g.stderr, "The certificate of host %s is revoked: its agent is refused from now on.\n"+
				"This token joins one machine as host %s (ID %s, its VMs kept) until %s. On that machine, put it in a file only root reads and run:\n"+
				"  vdc agent --server %s --join-token-file FILE --data DIR --name %s\n",
				safe(r.Host.Name), safe(r.Host.Name), safe(r.Host.ID), r.Token.Expires.Local().Format("2006-01-02 15:04 MST"), c.URL(), safe(r.Host.Name))
			return nil
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", ttl, "how long the token is valid")
	return cmd
}
