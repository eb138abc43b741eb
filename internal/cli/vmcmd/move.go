package vmcmd

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// newMoveCmd is vdc vm move: into another VM folder.
func newMoveCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "move VM FOLDER",
		Short: "Put a VM in another VM folder of its datacenter (/ for the top level)",
		Long: `Put a VM in another VM folder of its datacenter: FOLDER is a path such as
/web/prod, or / for the datacenter's top level. Permissions on a folder apply
to the VMs in it, so a move changes who may do what with the VM; it needs
VirtualMachine.Inventory.Move on the VM and on the folder it goes to.`,
		Example: "  vdc vm move web1 /web\n  vdc vm move web1 /",
		Args:    cmdutil.ExactArgs(2),
	}
	cmdutil.AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, folder := args[0], args[1]
		return g.Apply(cmd.Context(), cmdutil.Change{
			What: fmt.Sprintf("move vm %s to %s", name, folder),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Action(ctx, api.KindVM, name, "move", api.VMMoveRequest{Folder: folder})
			},
			Done: func(_ context.Context, _ *client.Client, t *api.Task) string {
				if t.Message != "" {
					return t.Message
				}
				return fmt.Sprintf("vm %s moved to %s", name, folder)
			},
		})
	}
	return cmd
}
