package cmdutil

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// Noun describes an inventory noun (vm, host, image, datacenter, cluster,
// datastore, port group): they all have the same ls, info, create, update
// and delete verbs, so a Noun says what differs and Command builds the
// verbs once for all of them.
type Noun[T api.Object] struct {
	Kind     string // REST collection, api.KindVM...
	Singular string // in messages: "vm", "port group"
	Title    string // in help, if not Singular: "VM"
	Plural   string // in help: "VMs", "port groups"
	Use      string // the command: "portgroup"
	Aliases  []string
	Short    string

	Columns func(now time.Time) []Column[T]       // of ls
	Info    func(v *InfoView, o T, now time.Time) // of info, after -o json is ruled out

	// ListFlags adds filters to ls; the returned func gives the query.
	ListFlags func(cmd *cobra.Command) func() (url.Values, error)

	// Create (nil: no create verb) adds its flags; the returned func builds
	// the request body.
	Create        func(cmd *cobra.Command) func(name string) (any, error)
	CreateExample string
	// Created is the line printed after a create succeeded, from its task;
	// it may read the new object (ReadTarget). Default: "<noun> <name> created".
	Created func(ctx context.Context, c *client.Client, t *api.Task, name string) string

	// Update (nil: no update verb) adds its flags; the returned func builds
	// the PATCH body from the flags that were given.
	Update        func(cmd *cobra.Command) func() (any, error)
	UpdateExample string

	// DeleteFlags adds flags to delete; the returned func gives the query.
	DeleteFlags func(cmd *cobra.Command) func() url.Values
}

// KindAnnotation is the key of the annotation that Noun.Command puts on
// the noun's command: its Kind, whose names the shell completes for the
// NAME argument of its verbs.
const KindAnnotation = "vdc.kind"

func (d *Noun[T]) helpNoun() string {
	if d.Title != "" {
		return d.Title
	}
	return d.Singular
}

// Command builds the noun's command (a Group) with its common verbs and
// extra ones.
func (d *Noun[T]) Command(g *Globals, extra ...*cobra.Command) *cobra.Command {
	cmd := Group(g, d.Use, d.Short, d.Aliases...)
	cmd.Annotations = map[string]string{KindAnnotation: d.Kind}
	cmd.AddCommand(d.lsCmd(g), d.infoCmd(g))
	if d.Create != nil {
		cmd.AddCommand(d.createCmd(g))
	}
	if d.Update != nil {
		cmd.AddCommand(d.updateCmd(g))
	}
	cmd.AddCommand(d.deleteCmd(g))
	cmd.AddCommand(extra...)
	return cmd
}

func (d *Noun[T]) lsCmd(g *Globals) *cobra.Command {
	query := func() (url.Values, error) { return nil, nil }
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List " + d.Plural,
		Example: fmt.Sprintf("  vdc %s ls\n  vdc %s ls -o json", d.Use, d.Use),
		Args:    ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := query()
			if err != nil {
				return err
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			items, err := client.List[T](cmd.Context(), c, d.Kind, q)
			if err != nil {
				return fmt.Errorf("list %s: %w", d.Plural, err)
			}
			return PrintList(g, items, d.Columns(time.Now()))
		},
	}
	if d.ListFlags != nil {
		query = d.ListFlags(cmd)
	}
	return cmd
}

func (d *Noun[T]) infoCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "info NAME",
		Aliases: []string{"show"},
		Short:   "Show a " + d.helpNoun() + " in detail",
		Example: fmt.Sprintf("  vdc %s info NAME\n  vdc %s info NAME -o json", d.Use, d.Use),
		Args:    ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			o, err := client.Get[T](cmd.Context(), c, d.Kind, args[0])
			if err != nil {
				return fmt.Errorf("read %s %s: %w", d.Singular, args[0], err)
			}
			now := time.Now()
			return PrintInfo(g, o, func(v *InfoView, o T) { d.Info(v, o, now) })
		},
	}
}

func (d *Noun[T]) createCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a " + d.helpNoun(),
		Example: d.CreateExample,
		Args:    ExactArgs(1),
	}
	build := d.Create(cmd)
	AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := api.ValidateName(d.Singular, name); err != nil {
			return err
		}
		req, err := build(name)
		if err != nil {
			return err
		}
		return g.Apply(cmd.Context(), Change{
			What: fmt.Sprintf("create %s %s", d.Singular, name),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.Create(ctx, d.Kind, req) },
			Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
				if d.Created != nil {
					return d.Created(ctx, c, t, name)
				}
				return fmt.Sprintf("%s %s created", d.Singular, name)
			},
		})
	}
	return cmd
}

func (d *Noun[T]) updateCmd(g *Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "update NAME",
		Aliases: []string{"set"},
		Short:   "Change a " + d.helpNoun(),
		Long: "Change a " + d.helpNoun() + "; what is not given stays as it is. --label k=v sets a label,\n" +
			"--label k= removes one. The change applies only if the " + d.helpNoun() + " did not change\n" +
			"since it was read here, else it fails with a conflict: run it again.",
		Example: d.UpdateExample,
		Args:    ExactArgs(1),
	}
	build := d.Update(cmd)
	AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := needChange(cmd); err != nil {
			return err
		}
		req, err := build()
		if err != nil {
			return err
		}
		return g.Apply(cmd.Context(), Change{
			What: fmt.Sprintf("update %s %s", d.Singular, name),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				// Send the revision read here as If-Match: a change someone
				// made in between fails with a conflict instead of being lost.
				cur, err := client.Get[T](ctx, c, d.Kind, name)
				if err != nil {
					return nil, err
				}
				return c.Update(ctx, d.Kind, name, req, cur.GetMeta().Generation)
			},
			Done: func(_ context.Context, _ *client.Client, t *api.Task) string {
				msg := fmt.Sprintf("%s %s updated", d.Singular, name)
				if n := t.Target.Name; n != "" && n != name {
					msg += ", now named " + n
				}
				// What the server adds: a change that applies later, what
				// a hot-add did in the guest.
				var r struct {
					Message string `json:"message"`
				}
				if t.Message != "" {
					msg += "; " + t.Message
				} else if json.Unmarshal(t.Result, &r) == nil && r.Message != "" {
					msg += "; " + r.Message
				}
				return msg
			},
		})
	}
	return cmd
}

func (d *Noun[T]) deleteCmd(g *Globals) *cobra.Command {
	query := func() url.Values { return nil }
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a " + d.helpNoun(),
		Example: fmt.Sprintf("  vdc %s delete NAME", d.Use),
		Args:    ExactArgs(1),
	}
	if d.DeleteFlags != nil {
		query = d.DeleteFlags(cmd)
	}
	AddAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		return g.Apply(cmd.Context(), Change{
			What: fmt.Sprintf("delete %s %s", d.Singular, name),
			Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Delete(ctx, d.Kind, name, query())
			},
			Done: func(context.Context, *client.Client, *api.Task) string {
				return fmt.Sprintf("%s %s deleted", d.Singular, name)
			},
		})
	}
	return cmd
}

// needChange refuses an update without any change flag.
func needChange(cmd *cobra.Command) error {
	changed := false
	var names []string
	cmd.LocalFlags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "async" || f.Name == "help" {
			return
		}
		names = append(names, "--"+f.Name)
		changed = changed || f.Changed
	})
	if changed {
		return nil
	}
	return fmt.Errorf("%s: nothing to change; give at least one of %s", cmd.CommandPath(), strings.Join(names, ", "))
}

// MetaInfo adds the fields every object has to an info view: name, ID,
// labels, created.
func MetaInfo(v *InfoView, m *api.ObjectMeta, now time.Time) {
	v.Add("Name", m.Name)
	v.Add("ID", m.ID)
	v.Add("Labels", labelString(m.Labels))
	v.Add("Created", TimeAndAge(now, m.Created))
}
