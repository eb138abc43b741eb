// Package authcmd is the CLI of who may do what: roles and permissions.
package authcmd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/control/authz"
)

// NewRoleCmd is `vdc role`: the built-in roles and custom ones.
func NewRoleCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Role]{
		Kind: api.KindRole, Singular: "role", Plural: "roles", Use: "role",
		Short: "Manage roles: named sets of privileges that permissions give on objects",
		Columns: func(time.Time) []cmdutil.Column[*api.Role] {
			return []cmdutil.Column[*api.Role]{
				{Header: "name", Value: func(o *api.Role) string { return o.Metadata.Name }},
				{Header: "built-in", Value: func(o *api.Role) string { return map[bool]string{true: "yes", false: "no"}[o.Spec.BuiltIn] }},
				{Header: "privileges", Value: func(o *api.Role) string { return fmt.Sprint(len(o.Spec.Privileges)) }},
				{Header: "description", Value: func(o *api.Role) string { return o.Spec.Description }},
			}
		},
		Info: func(v *cmdutil.InfoView, o *api.Role, _ time.Time) {
			v.Add("Name", o.Metadata.Name)
			v.Add("Built in", map[bool]string{true: "yes", false: "no"}[o.Spec.BuiltIn])
			v.Add("Description", o.Spec.Description)
			v.Add("Privileges", strings.Join(o.Spec.Privileges, "\n"))
		},
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, false)
			privs := cmd.Flags().StringSlice("privilege", nil, "a privilege of the role (repeat, or comma-separate; vdc role privileges lists them)")
			return func(name string) (any, error) {
				return api.RoleCreateRequest{Name: name, Privileges: *privs, Description: m.Description}, nil
			}
		},
		CreateExample: "  vdc role create snapshotter --privilege System.Read,VirtualMachine.State.CreateSnapshot",
	}
	privileges := &cobra.Command{
		Use:   "privileges",
		Short: "List every privilege a role can hold",
		Args:  cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, p := range authz.All {
				fmt.Fprintln(g.Stdout, p)
			}
			return nil
		},
	}
	return d.Command(g, privileges)
}

// NewPermissionCmd is `vdc permission`: roles given to users and groups
// on objects.
func NewPermissionCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "permission", "Give users and groups roles on objects of the inventory", "perm")
	cols := []cmdutil.Column[*api.Permission]{
		{Header: "name", Value: func(o *api.Permission) string { return o.Metadata.Name }},
		{Header: "principal", Value: principal},
		{Header: "role", Value: func(o *api.Permission) string { return o.Spec.Role }},
		{Header: "object", Value: func(o *api.Permission) string { return object(o.Spec.Object) }},
		{Header: "propagate", Value: func(o *api.Permission) string { return map[bool]string{true: "yes", false: "no"}[o.Spec.Propagate] }},
	}
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List permissions (on the objects you may see)", Args: cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			items, err := client.List[*api.Permission](cmd.Context(), c, api.KindPermission, nil)
			if err != nil {
				return fmt.Errorf("list permissions: %w", err)
			}
			return cmdutil.PrintList(g, items, cols)
		},
	}
	var req api.PermissionCreateRequest
	var user, group string
	add := &cobra.Command{
		Use:   "add --object KIND:NAME|root (--user U | --group G) --role ROLE [--propagate]",
		Short: "Give a user or group a role on an object (and, with --propagate, on what is under it)",
		Example: "  vdc permission add --object root --user alice --role ReadOnly --propagate\n" +
			"  vdc permission add --object hosts:host-1 --group ops --role VirtualMachinePowerUser --propagate\n" +
			"  vdc permission add --object folders:/web --user alice --role VirtualMachineUser --propagate",
		Args: cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case (user == "") == (group == ""):
				return fmt.Errorf("give --user or --group")
			case group != "":
				req.Principal, req.Group = group, true
			default:
				req.Principal = user
			}
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: "add a permission on " + req.Object,
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
					return c.Create(ctx, api.KindPermission, req)
				},
				Done: func(_ context.Context, _ *client.Client, t *api.Task) string {
					return fmt.Sprintf("permission %s: %s %s has role %s on %s", t.Target.Name, map[bool]string{true: "group", false: "user"}[req.Group],
						req.Principal, req.Role, req.Object)
				},
			})
		},
	}
	fl := add.Flags()
	fl.StringVar(&req.Object, "object", "", "the object: root (everything), or KIND:NAME (vms:web1, folders:/web, hosts:host-1, clusters:cluster1, datacenters:dc1, datastores:..., portgroups:...)")
	fl.StringVar(&user, "user", "", "the user the permission is for")
	fl.StringVar(&group, "group", "", "the group the permission is for")
	fl.StringVar(&req.Role, "role", "", "the role (vdc role ls)")
	fl.BoolVar(&req.Propagate, "propagate", false, "apply to everything under the object too")
	_ = add.MarkFlagRequired("object")
	_ = add.MarkFlagRequired("role")
	cmdutil.AddAsync(add, g)
	rm := &cobra.Command{
		Use: "rm NAME", Aliases: []string{"delete"}, Short: "Remove a permission (vdc permission ls names them); it stops applying at once",
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.Apply(cmd.Context(), cmdutil.Change{
				What: "remove permission " + args[0],
				Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
					return c.Delete(ctx, api.KindPermission, args[0], nil)
				},
				Done: func(context.Context, *client.Client, *api.Task) string { return "permission " + args[0] + " removed" },
			})
		},
	}
	cmdutil.AddAsync(rm, g)
	cmd.AddCommand(ls, add, rm)
	return cmd
}

func principal(o *api.Permission) string {
	if o.Spec.Group {
		return "group:" + o.Spec.Principal
	}
	return o.Spec.Principal
}

func object(r api.ObjectRef) string {
	if r.Kind == authz.Root.Kind {
		return "root"
	}
	return r.Kind + ":" + r.Name
}
