// Package netcmd is the command line of VM networks: vdc switch (the
// distributed switches, defined once per cluster, with their realization
// on each host) and vdc portgroup (the networks NICs attach to: VXLAN,
// VLAN or isolated on a switch, or NAT with no switch; their security and
// traffic shaping).
package netcmd

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func NewSwitchCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Switch]{
		Kind: api.KindSwitch, Singular: "switch", Plural: "switches", Use: "switch", Aliases: []string{"sw"},
		Short: "Manage distributed switches: defined once per cluster, realized by every host",
		Columns: func(now time.Time) []cmdutil.Column[*api.Switch] {
			return []cmdutil.Column[*api.Switch]{
				{Header: "name", Value: func(o *api.Switch) string { return o.Metadata.Name }},
				{Header: "cluster", Value: func(o *api.Switch) string { return o.Spec.Cluster.String() }},
				{Header: "backend", Value: func(o *api.Switch) string { return o.Spec.Backend }},
				{Header: "mtu", Value: func(o *api.Switch) string { return strconv.Itoa(o.Spec.MTU) }},
				{Header: "port groups", Value: func(o *api.Switch) string { return strconv.Itoa(o.Status.PortGroups) }},
				{Header: "realized", Value: realizedOf},
				{Header: "age", Value: func(o *api.Switch) string { return cmdutil.Age(now, o.Metadata.Created) }},
			}
		},
		Info: switchInfo,
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, true)
			cluster := cmd.Flags().String("cluster", "", "the cluster whose hosts realize the switch (default: the only one)")
			backend := cmd.Flags().String("backend", api.BackendBridge, "bridge (Linux bridges and VXLAN) or ovs (Open vSwitch)")
			mtu := cmd.Flags().Int("mtu", 1500, "the guests' MTU; the hosts' network must carry it plus 50 bytes for VXLAN")
			uplinks := cmd.Flags().StringArray("uplink", nil, "a host interface the switch uses, in failover order (repeatable; default: the one of the host's address)")
			return func(name string) (any, error) {
				labels, err := m.LabelMap()
				return api.SwitchCreateRequest{Name: name, Cluster: *cluster, Backend: *backend, MTU: *mtu, Uplinks: *uplinks,
					Description: m.Description, Labels: labels}, err
			}
		},
		CreateExample: "  vdc switch create dvs1 --cluster cluster1\n  vdc switch create dvs2 --cluster prod --backend ovs --mtu 9000 --uplink eth1 --uplink eth2",
		Update: func(cmd *cobra.Command) func() (any, error) {
			m := cmdutil.AddMetaFlags(cmd, true, true)
			mtu := cmd.Flags().Int("mtu", 0, "the guests' MTU")
			uplinks := cmd.Flags().StringArray("uplink", nil, "the uplinks, in failover order (repeatable; replaces the list)")
			return func() (any, error) {
				mc, err := m.Change("switch")
				return api.SwitchUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels,
					MTU: cmdutil.Changed(cmd, "mtu", *mtu), Uplinks: cmdutil.Changed(cmd, "uplink", *uplinks)}, err
			}
		},
		UpdateExample: "  vdc switch update dvs1 --mtu 9000",
	}
	return d.Command(g)
}

// realizedOf counts the hosts that realized a switch: "2/3".
func realizedOf(o *api.Switch) string {
	n := 0
	for _, h := range o.Status.Hosts {
		if h.State == api.RealizedOK {
			n++
		}
	}
	return fmt.Sprintf("%d/%d", n, len(o.Status.Hosts))
}

func switchInfo(v *cmdutil.InfoView, o *api.Switch, now time.Time) {
	cmdutil.MetaInfo(v, &o.Metadata, now)
	v.Add("Cluster", o.Spec.Cluster.String())
	v.Add("Backend", o.Spec.Backend)
	v.Add("MTU", strconv.Itoa(o.Spec.MTU))
	v.Add("Uplinks", strings.Join(o.Spec.Uplinks, ", "))
	v.Add("Description", o.Spec.Description)
	v.Add("Port groups", strconv.Itoa(o.Status.PortGroups))
	var rows [][]string
	for _, h := range o.Status.Hosts {
		rows = append(rows, []string{h.Host.String(), h.State, h.Reason})
		for _, p := range h.PortGroups {
			rows = append(rows, []string{"", "", "port group " + p.PortGroup.String() + ": " + p.Reason})
		}
	}
	v.Table("Hosts", []string{"host", "state", "reason"}, rows)
}
