package inventorycmd

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// NewFolderCmd is vdc folder: VM folders, which permissions are given on.
// A folder is named by its path (/web/prod), its ID, or its name when
// only one folder has it.
func NewFolderCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Folder]{
		Kind: api.KindFolder, Singular: "folder", Plural: "VM folders", Use: "folder",
		Short: "Manage VM folders: groups of VMs that permissions are given on (vdc permission add --object folders:/web)",
		Columns: func(now time.Time) []cmdutil.Column[*api.Folder] {
			return []cmdutil.Column[*api.Folder]{
				{Header: "path", Value: func(o *api.Folder) string { return o.Spec.Path }},
				{Header: "datacenter", Value: func(o *api.Folder) string { return o.Spec.Datacenter.String() }},
				{Header: "vms", Value: func(o *api.Folder) string { return strconv.Itoa(o.Status.VMs) }},
				{Header: "folders", Value: func(o *api.Folder) string { return strconv.Itoa(o.Status.Folders) }},
				{Header: "description", Value: func(o *api.Folder) string { return cmdutil.Truncate(o.Spec.Description, 50) }},
				{Header: "age", Value: func(o *api.Folder) string { return cmdutil.Age(now, o.Metadata.Created) }},
			}
		},
		Info: func(v *cmdutil.InfoView, o *api.Folder, now time.Time) {
			cmdutil.MetaInfo(v, &o.Metadata, now)
			v.Add("Path", o.Spec.Path)
			v.Add("Datacenter", o.Spec.Datacenter.String())
			v.Add("Description", o.Spec.Description)
			v.Add("VMs", fmt.Sprintf("%d (vdc vm ls --folder %s)", o.Status.VMs, o.Spec.Path))
			v.Add("Folders", strconv.Itoa(o.Status.Folders))
		},
		ListFlags: datacenterFilter,
		Update: func(cmd *cobra.Command) func() (any, error) {
			m := cmdutil.AddMetaFlags(cmd, true, true)
			return func() (any, error) {
				mc, err := m.Change("folder")
				return api.FolderUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels}, err
			}
		},
		UpdateExample: "  vdc folder update /web --description 'the web team' --label team=web",
	}
	return d.Command(g, newFolderCreateCmd(g), newFolderRenameCmd(g))
}

func newFolderCreateCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.FolderCreateRequest
	cmd := &cobra.Command{
		Use:   "create PATH",
		Short: "Create a VM folder at a path; its parent must exist (or give --parents)",
		Example: `  vdc folder create /web
  vdc folder create /web/prod --description 'production web servers'
  vdc folder create /db/prod --parents --datacenter dc1`,
		Args: cmdutil.ExactArgs(1),
	}
	m := cmdutil.AddMetaFlags(cmd, false, true)
	cmd.Flags().StringVar(&req.Datacenter, "datacenter", "", "datacenter (default: the only one)")
	cmd.Flags().BoolVar(&req.Parents, "parents", false, "make the missing folders on the way too")
	cmdutil.AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req.Path = args[0]
		if _, err := api.SplitFolderPath(req.Path); err != nil {
			return err
		}
		var err error
		if req.Labels, err = m.LabelMap(); err != nil {
			return err
		}
		req.Description = m.Description
		return g.Apply(cmd.Context(), cmdutil.Change{
			What: "create folder " + req.Path,
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Create(ctx, api.KindFolder, req)
			},
			Done: func(context.Context, *client.Client, *api.Task) string { return "folder " + req.Path + " created" },
		})
	}
	return cmd
}

func newFolderRenameCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "rename NAME NEW",
		Short:   "Rename a VM folder (it stays where it is; what is under it follows)",
		Example: "  vdc folder rename /web/prod production",
		Args:    cmdutil.ExactArgs(2),
	}
	cmdutil.AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name, to := args[0], args[1]
		if err := api.ValidateName("folder", to); err != nil {
			return err
		}
		return g.Apply(cmd.Context(), cmdutil.Change{
			What: fmt.Sprintf("rename folder %s to %s", name, to),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Update(ctx, api.KindFolder, name, api.FolderUpdateRequest{Name: &to}, 0)
			},
			Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
				if f, ok := cmdutil.ReadTarget[*api.Folder](ctx, c, t); ok {
					return fmt.Sprintf("folder %s renamed: now %s", name, f.Spec.Path)
				}
				return fmt.Sprintf("folder %s renamed to %s", name, to)
			},
		})
	}
	return cmd
}
