package vmcmd

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func newNICCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "nic", "List, add, move and remove a VM's NICs, live while it runs")
	cmd.AddCommand(newNICLsCmd(g), newNICAddCmd(g), newNICUpdateCmd(g), newNICRmCmd(g))
	return cmd
}

// nicView is one NIC as vm nic ls shows it: its spec with what the server
// computes of it.
type nicView struct {
	Name      string `json:"name"`
	PortGroup string `json:"portGroup"`
	Model     string `json:"model"`
	MAC       string `json:"mac"`
	IPv4      string `json:"ipv4,omitempty"`
	Tap       string `json:"tap,omitempty"`
	LinkDown  bool   `json:"linkDown"`
	Slot      string `json:"slot,omitempty"`
}

func nicViews(vm *api.VM) []nicView {
	taps := map[string]string{}
	for _, st := range vm.Status.NICs {
		taps[st.Name] = st.Tap
	}
	out := []nicView{}
	for _, n := range vm.Spec.NICs {
		out = append(out, nicView{Name: n.Name, PortGroup: n.PortGroup.String(), Model: n.Model, MAC: n.MAC, IPv4: n.IPv4,
			Tap: taps[n.Name], LinkDown: n.LinkDown, Slot: n.Slot})
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// tapCell says where a NIC is on its host: its tap, or QEMU's NAT.
func tapCell(n nicView) string {
	if n.Tap == "" {
		return "- (nat)"
	}
	return n.Tap
}

var nicColumns = []cmdutil.Column[nicView]{
	{Header: "name", Value: func(n nicView) string { return n.Name }},
	{Header: "port group", Value: func(n nicView) string { return n.PortGroup }},
	{Header: "model", Value: func(n nicView) string { return n.Model }},
	{Header: "mac", Value: func(n nicView) string { return n.MAC }},
	{Header: "ipv4", Value: func(n nicView) string { return orDash(n.IPv4) }},
	{Header: "tap", Value: tapCell},
	{Header: "link", Value: func(n nicView) string { return linkState(n.LinkDown) }},
}

func linkState(down bool) string {
	if down {
		return "down"
	}
	return "up"
}

func newNICLsCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls VM",
		Short: "List a VM's NICs: port group, model, MAC, the address DHCP gives it, its tap on the host, link state",
		Example: `  vdc vm nic ls web1
  vdc vm nic ls web1 -o json`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			vm, err := c.GetVM(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("list the NICs of vm %s: %w", args[0], err)
			}
			return cmdutil.PrintList(g, nicViews(vm), nicColumns)
		},
	}
}

// nicSummary describes a VM's NIC for a Done line: "nic1 (web, 52:54:00:12:34:56, 192.0.2.3, tap vt1a2b3c4dn1)".
func nicSummary(ctx context.Context, c *client.Client, vm, nic string) string {
	v, err := c.GetVM(ctx, vm)
	if err != nil {
		return nic
	}
	for _, n := range nicViews(v) {
		if n.Name == nic {
			s := fmt.Sprintf("%s (%s, %s", n.Name, n.PortGroup, n.MAC)
			if n.IPv4 != "" {
				s += ", " + n.IPv4
			}
			if n.Tap != "" {
				s += ", tap " + n.Tap
			}
			return s + ", link " + linkState(n.LinkDown) + ")"
		}
	}
	return nic
}

func newNICAddCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "add VM PORTGROUP[,model=MODEL][,mac=MAC]",
		Short: "Add a NIC on a port group (hot-plugged into a running VM); it is named nicN, the next free N",
		Long: `Add a NIC on a port group. Into a running VM it is hot-plugged (the guest
sees a new network card); on a port group with DHCP it gets the next free
address of the subnet. MODEL is virtio (default), e1000 or rtl8139; MAC
defaults to a new one, unique in the datacenter.`,
		Example: `  vdc vm nic add web1 dmz
  vdc vm nic add db1 backend,model=e1000,mac=52:54:00:12:34:56`,
		Args: cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm := args[0]
			req, err := parseNIC("PORTGROUP", args[1])
			if err != nil {
				return err
			}
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("add a NIC on %s to vm %s", req.PortGroup, vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.AddNIC(ctx, vm, req) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					var name string
					_ = json.Unmarshal(t.Result, &name)
					return fmt.Sprintf("%s added to vm %s", nicSummary(ctx, c, vm, name), vm)
				},
			})
		},
	}
	cmdutil.AddAsync(cmd, g)
	return cmd
}

// nicUpdateFlags are vm nic update's flags.
type nicUpdateFlags struct {
	portGroup, link string
}

// request is what the flags ask for; at least one must be given.
func (f nicUpdateFlags) request(cmd *cobra.Command) (api.NICUpdateRequest, error) {
	var req api.NICUpdateRequest
	if cmd.Flags().Changed("portgroup") {
		if f.portGroup == "" {
			return req, fmt.Errorf("--portgroup: give a port group")
		}
		req.PortGroup = &f.portGroup
	}
	if cmd.Flags().Changed("link") {
		var down bool
		switch f.link {
		case "up":
		case "down":
			down = true
		default:
			return req, fmt.Errorf("--link must be up or down, got %q", f.link)
		}
		req.LinkDown = &down
	}
	if req.PortGroup == nil && req.LinkDown == nil {
		return req, fmt.Errorf("nothing to change: give --portgroup PG, --link up|down, or both")
	}
	return req, nil
}

func newNICUpdateCmd(g *cmdutil.Globals) *cobra.Command {
	var f nicUpdateFlags
	cmd := &cobra.Command{
		Use:   "update VM NIC [--portgroup PG] [--link up|down]",
		Short: "Move a NIC to another port group, or plug or unplug its virtual cable, live",
		Long: `Move a NIC to another port group or set its link state. While the VM runs,
a NIC moves live between port groups of switches of one backend (its tap
is attached to the new port group; the guest keeps its card); between a
NAT port group and a switch's it moves only while the VM is off. A NIC
moved to a port group with DHCP gets an address of its subnet (the guest
sees it when its DHCP client renews). --link down unplugs the virtual
cable (the guest sees no carrier) and stays so across power cycles.`,
		Example: `  vdc vm nic update web1 nic1 --portgroup dmz
  vdc vm nic update web1 nic0 --link down`,
		Args: cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, nic := args[0], args[1]
			req, err := f.request(cmd)
			if err != nil {
				return err
			}
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("change %s of vm %s", nic, vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.UpdateNIC(ctx, vm, nic, req) },
				Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
					return fmt.Sprintf("vm %s: %s", vm, nicSummary(ctx, c, vm, nic))
				},
			})
		},
	}
	cmd.Flags().StringVar(&f.portGroup, "portgroup", "", "the port group to move the NIC to")
	cmd.Flags().StringVar(&f.link, "link", "", "up or down: plug or unplug the NIC's virtual cable")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

func newNICRmCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rm VM NIC",
		Aliases: []string{"remove"},
		Short:   "Remove a NIC (unplugged from a running VM once its guest lets go of it)",
		Example: "  vdc vm nic rm web1 nic1",
		Args:    cmdutil.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, nic := args[0], args[1]
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: fmt.Sprintf("remove %s of vm %s", nic, vm),
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.RemoveNIC(ctx, vm, nic) },
				Done: func(context.Context, *client.Client, *api.Task) string {
					return fmt.Sprintf("%s removed from vm %s", nic, vm)
				},
			})
		},
	}
	cmdutil.AddAsync(cmd, g)
	return cmd
}
