package netcmd

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// NewHostNetworkCmd is `vdc host network HOST`: the host's uplinks with
// their LLDP neighbours, and how each of its switches is realized there.
func NewHostNetworkCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "network HOST",
		Short: "Show a host's uplinks, the switch ports LLDP sees them plugged into, and its switches' state",
		Example: `  vdc host network host-1
  vdc host network host-1 -o json`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			h, err := client.Get[*api.Host](cmd.Context(), c, api.KindHost, args[0])
			if err != nil {
				return fmt.Errorf("read host %s: %w", args[0], err)
			}
			var switches []*api.Switch
			if switches, err = client.List[*api.Switch](cmd.Context(), c, api.KindSwitch, nil); err != nil {
				return fmt.Errorf("list switches: %w", err)
			}
			if g.JSONOutput() {
				return cmdutil.WriteJSON(g.Stdout, map[string]any{"tunnelAddress": h.Status.TunnelAddress, "uplinks": h.Status.Uplinks,
					"lldp": h.Status.LLDP, "switches": hostSwitches(h, switches)})
			}
			return cmdutil.PrintInfo(g, h, func(v *cmdutil.InfoView, h *api.Host) { hostNetworkInfo(v, h, switches) })
		},
	}
}

func hostNetworkInfo(v *cmdutil.InfoView, h *api.Host, switches []*api.Switch) {
	v.Add("Host", h.Metadata.Name)
	v.Add("Tunnel address", h.Status.TunnelAddress)
	if h.Status.LLDP != "" {
		v.Add("LLDP", h.Status.LLDP)
	}
	var rows [][]string
	for _, u := range h.Status.Uplinks {
		state := "down"
		if u.Up {
			state = "up"
		}
		row := []string{u.Name, u.MAC, strconv.Itoa(u.MTU), state, strings.Join(u.Addresses, " ")}
		if len(u.Neighbors) == 0 {
			rows = append(rows, append(row, "", ""))
		}
		for i, n := range u.Neighbors {
			if i > 0 {
				row = []string{"", "", "", "", ""}
			}
			rows = append(rows, append(row, neighborName(n), port(n)))
		}
	}
	v.Table("Uplinks", []string{"uplink", "mac", "mtu", "state", "addresses", "neighbour", "port"}, rows)
	rows = nil
	for _, s := range hostSwitches(h, switches) {
		rows = append(rows, []string{s.Switch, s.State, s.Reason})
	}
	v.Table("Switches", []string{"switch", "state", "reason"}, rows)
}

func neighborName(n api.LLDPNeighbor) string {
	if n.SysName != "" && n.ChassisID != "" {
		return n.SysName + " (" + n.ChassisID + ")"
	}
	return n.SysName + n.ChassisID
}

func port(n api.LLDPNeighbor) string {
	if n.PortDescr != "" && n.PortDescr != n.PortID {
		return n.PortID + " (" + n.PortDescr + ")"
	}
	return n.PortID
}

type hostSwitch struct {
	Switch string `json:"switch"`
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// hostSwitches is the state on host h of each switch of its cluster.
func hostSwitches(h *api.Host, switches []*api.Switch) []hostSwitch {
	var out []hostSwitch
	for _, sw := range switches {
		for _, sh := range sw.Status.Hosts {
			if sh.Host.ID == h.Metadata.ID {
				reason := sh.Reason
				for _, p := range sh.PortGroups {
					reason += "; port group " + p.PortGroup.String() + ": " + p.Reason
				}
				out = append(out, hostSwitch{Switch: sw.Metadata.Name, State: sh.State, Reason: strings.TrimPrefix(reason, "; ")})
			}
		}
	}
	return out
}
