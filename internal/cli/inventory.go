package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// Every inventory noun (vm, host, datacenter, cluster, datastore, port
// group) has the same ls, info, create, update and delete verbs; a nounDef
// says what differs and command() builds the verbs once for all of them.
type nounDef[T api.Object] struct {
	kind     string // REST collection, api.KindVM...
	singular string // in messages: "vm", "port group"
	title    string // in help, if not singular: "VM"
	plural   string // in help: "VMs", "port groups"
	use      string
	aliases  []string
	short    string

	columns func(now time.Time) []column[T]
	info    func(v *infoView, o T, now time.Time)

	// listFlags adds filters to ls; the returned func gives the query.
	listFlags func(cmd *cobra.Command) func() (url.Values, error)

	// create (nil: no create verb) adds its flags; the returned func builds
	// the request body.
	create        func(cmd *cobra.Command) func(name string) (any, error)
	createExample string
	// created is the line printed after a create (default "<noun> <name> created").
	created func(o T) string

	// update (nil: no update verb) adds its flags; the returned func builds
	// the PATCH body from the flags that were given.
	update        func(cmd *cobra.Command) func() (any, error)
	updateExample string

	// deleteFlags adds flags to delete; the returned func gives the query.
	deleteFlags func(cmd *cobra.Command) func() url.Values
}

func (d *nounDef[T]) helpNoun() string {
	if d.title != "" {
		return d.title
	}
	return d.singular
}

// command builds the noun's command with its common verbs and extra ones.
func (d *nounDef[T]) command(g *globals, extra ...*cobra.Command) *cobra.Command {
	cmd := group(g, d.use, d.short, d.aliases...)
	cmd.AddCommand(d.lsCmd(g), d.infoCmd(g))
	if d.create != nil {
		cmd.AddCommand(d.createCmd(g))
	}
	if d.update != nil {
		cmd.AddCommand(d.updateCmd(g))
	}
	cmd.AddCommand(d.deleteCmd(g))
	cmd.AddCommand(extra...)
	return cmd
}

func (d *nounDef[T]) lsCmd(g *globals) *cobra.Command {
	query := func() (url.Values, error) { return nil, nil }
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List " + d.plural,
		Example: fmt.Sprintf("  vdc %s ls\n  vdc %s ls -o json", d.use, d.use),
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := query()
			if err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			items, err := client.List[T](cmd.Context(), c, d.kind, q)
			if err != nil {
				return fmt.Errorf("list %s: %w", d.plural, err)
			}
			return printList(g, items, d.columns(time.Now()))
		},
	}
	if d.listFlags != nil {
		query = d.listFlags(cmd)
	}
	return cmd
}

func (d *nounDef[T]) infoCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "info NAME",
		Aliases: []string{"show"},
		Short:   "Show a " + d.helpNoun() + " in detail",
		Example: fmt.Sprintf("  vdc %s info NAME\n  vdc %s info NAME -o json", d.use, d.use),
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			o, err := client.Get[T](cmd.Context(), c, d.kind, args[0])
			if err != nil {
				return fmt.Errorf("read %s %s: %w", d.singular, args[0], err)
			}
			now := time.Now()
			return printInfo(g, o, func(v *infoView, o T) { d.info(v, o, now) })
		},
	}
}

func (d *nounDef[T]) createCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "create NAME",
		Short:   "Create a " + d.helpNoun(),
		Example: d.createExample,
		Args:    exactArgs(1),
	}
	build := d.create(cmd)
	addAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := api.ValidateName(d.singular, name); err != nil {
			return err
		}
		req, err := build(name)
		if err != nil {
			return err
		}
		return g.apply(cmd.Context(), change{
			what: fmt.Sprintf("create %s %s", d.singular, name),
			call: func(ctx context.Context, c *client.Client) (*api.Task, error) { return c.Create(ctx, d.kind, req) },
			done: func(ctx context.Context, c *client.Client, t *api.Task) string {
				if t.Op == "vm.clone" { // vm create --from-template
					return cloneDone(name)(ctx, c, t)
				}
				if d.created != nil {
					if o, ok := readTarget[T](ctx, c, t); ok {
						return d.created(o)
					}
				}
				return fmt.Sprintf("%s %s created", d.singular, name)
			},
		})
	}
	return cmd
}

func (d *nounDef[T]) updateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "update NAME",
		Aliases: []string{"set"},
		Short:   "Change a " + d.helpNoun(),
		Long: "Change a " + d.helpNoun() + "; what is not given stays as it is. --label k=v sets a label,\n" +
			"--label k= removes one. The change applies only if the " + d.helpNoun() + " did not change\n" +
			"since it was read here, else it fails with a conflict: run it again.",
		Example: d.updateExample,
		Args:    exactArgs(1),
	}
	build := d.update(cmd)
	addAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if err := needChange(cmd); err != nil {
			return err
		}
		req, err := build()
		if err != nil {
			return err
		}
		return g.apply(cmd.Context(), change{
			what: fmt.Sprintf("update %s %s", d.singular, name),
			call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				// Send the revision read here as If-Match: a change someone
				// made in between fails with a conflict instead of being lost.
				cur, err := client.Get[T](ctx, c, d.kind, name)
				if err != nil {
					return nil, err
				}
				return c.Update(ctx, d.kind, name, req, cur.GetMeta().Generation)
			},
			done: func(_ context.Context, _ *client.Client, t *api.Task) string {
				msg := fmt.Sprintf("%s %s updated", d.singular, name)
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

func (d *nounDef[T]) deleteCmd(g *globals) *cobra.Command {
	query := func() url.Values { return nil }
	cmd := &cobra.Command{
		Use:     "delete NAME",
		Aliases: []string{"rm", "remove"},
		Short:   "Delete a " + d.helpNoun(),
		Example: fmt.Sprintf("  vdc %s delete NAME", d.use),
		Args:    exactArgs(1),
	}
	if d.deleteFlags != nil {
		query = d.deleteFlags(cmd)
	}
	addAsync(cmd, g)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		return g.apply(cmd.Context(), change{
			what: fmt.Sprintf("delete %s %s", d.singular, name),
			call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
				return c.Delete(ctx, d.kind, name, query())
			},
			done: func(context.Context, *client.Client, *api.Task) string {
				return fmt.Sprintf("%s %s deleted", d.singular, name)
			},
		})
	}
	return cmd
}

// group makes a noun command: its verbs are subcommands. It checks -o for
// all of them before any work, and names an unknown verb instead of
// printing help and exiting 0, as cobra would.
func group(g *globals, use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:                        use,
		Aliases:                    aliases,
		Short:                      short,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		PersistentPreRunE:          func(*cobra.Command, []string) error { return g.checkOutput() },
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return fmt.Errorf("%s (see %s --help)", msg, cmd.CommandPath())
		},
	}
}

// exactArgs is cobra.ExactArgs with the usage line in the error, as the
// root command silences usage.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return fmt.Errorf("%s: %v; usage: %s", cmd.CommandPath(), err, cmd.UseLine())
		}
		return nil
	}
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

// metaFlags are the flags that name, describe and label an object, shared
// by every create and update.
type metaFlags struct {
	cmd         *cobra.Command
	update      bool
	name        string
	description string
	labels      []string
}

// addMetaFlags adds --label, --description (unless the object has none)
// and, for an update, --name.
func addMetaFlags(cmd *cobra.Command, update, description bool) *metaFlags {
	m := &metaFlags{cmd: cmd, update: update}
	if update {
		cmd.Flags().StringVar(&m.name, "name", "", "new name")
		cmd.Flags().StringArrayVar(&m.labels, "label", nil, "set a label, key=value; key= removes it (repeatable)")
	} else {
		cmd.Flags().StringArrayVar(&m.labels, "label", nil, "label, key=value (repeatable)")
	}
	if description {
		cmd.Flags().StringVar(&m.description, "description", "", "free text description")
	}
	return m
}

// labelMap parses the --label flags.
func (m *metaFlags) labelMap() (map[string]string, error) {
	return parseLabels(m.labels, m.update)
}

// metaChange is what an update changes of the name, description and
// labels; nil fields stay as they are.
type metaChange struct {
	name, description *string
	labels            map[string]string
}

// change reads the update flags; "" clears the description.
func (m *metaFlags) change(singular string) (metaChange, error) {
	mc := metaChange{description: changed(m.cmd, "description", m.description)}
	if m.cmd.Flags().Changed("name") {
		if err := api.ValidateName(singular, m.name); err != nil {
			return mc, fmt.Errorf("--name: %w", err)
		}
		mc.name = &m.name
	}
	var err error
	mc.labels, err = m.labelMap()
	return mc, err
}

// changed points at v if the flag was given, for the optional fields of
// update requests.
func changed[V any](cmd *cobra.Command, flag string, v V) *V {
	if !cmd.Flags().Changed(flag) {
		return nil
	}
	return &v
}

// parseLabels reads key=value specs. An empty value removes a label in an
// update; a create has nothing to remove, so there it is an error.
func parseLabels(specs []string, update bool) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(specs))
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			return nil, fmt.Errorf("--label %q: want key=value", s)
		case k == "":
			return nil, fmt.Errorf("--label %q: the key is empty", s)
		case v == "" && !update:
			return nil, fmt.Errorf("--label %q: give a value (key= removes a label, in update only)", s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--label %q: label %q given twice", s, k)
		}
		out[k] = v
	}
	return out, nil
}

// datacenterFilter adds ls --datacenter to the nouns that belong to one.
func datacenterFilter(cmd *cobra.Command) func() (url.Values, error) {
	dc := cmd.Flags().String("datacenter", "", "only those of this datacenter")
	return func() (url.Values, error) {
		if *dc == "" {
			return nil, nil
		}
		return url.Values{"datacenter": {*dc}}, nil
	}
}

func newDatacenterCmd(g *globals) *cobra.Command {
	d := &nounDef[*api.Datacenter]{
		kind: api.KindDatacenter, singular: "datacenter", plural: "datacenters",
		use: "datacenter", aliases: []string{"dc"},
		short: "Manage datacenters, the top of the inventory",
		columns: func(now time.Time) []column[*api.Datacenter] {
			return []column[*api.Datacenter]{
				{header: "name", value: func(o *api.Datacenter) string { return o.Metadata.Name }},
				{header: "description", value: func(o *api.Datacenter) string { return truncate(o.Spec.Description, 50) }},
				{header: "age", value: func(o *api.Datacenter) string { return age(now, o.Metadata.Created) }},
			}
		},
		info: func(v *infoView, o *api.Datacenter, now time.Time) {
			metaInfo(v, &o.Metadata, now)
			v.add("Description", o.Spec.Description)
		},
		create: func(cmd *cobra.Command) func(string) (any, error) {
			m := addMetaFlags(cmd, false, true)
			return func(name string) (any, error) {
				labels, err := m.labelMap()
				return api.DatacenterCreateRequest{Name: name, Description: m.description, Labels: labels}, err
			}
		},
		createExample: "  vdc dc create dc1 --description 'main site'",
		update: func(cmd *cobra.Command) func() (any, error) {
			m := addMetaFlags(cmd, true, true)
			return func() (any, error) {
				mc, err := m.change("datacenter")
				return api.DatacenterUpdateRequest{Name: mc.name, Description: mc.description, Labels: mc.labels}, err
			}
		},
		updateExample: "  vdc dc update dc1 --name paris --label site=paris",
	}
	return d.command(g)
}

func newClusterCmd(g *globals) *cobra.Command {
	d := &nounDef[*api.Cluster]{
		kind: api.KindCluster, singular: "cluster", plural: "clusters", use: "cluster",
		short:         "Manage clusters, the groups of hosts that VMs are placed on",
		columns:       clusterColumns,
		info:          clusterInfo,
		create:        clusterCreateFlags,
		createExample: "  vdc cluster create prod --datacenter dc1 --cpu-overcommit 2",
		update:        clusterUpdateFlags,
		updateExample: `  vdc cluster update prod --memory-overcommit 1.5
  vdc cluster update prod --ha on --ha-admission-control host-failures --ha-vm-monitoring on
  vdc cluster update prod --ha-failure-detection 3s --ha-isolation-response shutdown`,
		listFlags: datacenterFilter,
	}
	return d.command(g)
}

// overcommitFlags adds the two ratio flags; check refuses a ratio given as 0 or less.
func overcommitFlags(cmd *cobra.Command) (cpu, mem *float64, check func() error) {
	cpu = cmd.Flags().Float64("cpu-overcommit", 0, fmt.Sprintf("vCPUs of powered-on VMs per physical CPU of a host (default %g)", api.DefaultCPUOvercommit))
	mem = cmd.Flags().Float64("memory-overcommit", 0, fmt.Sprintf("VM memory per byte of host memory (default %g)", api.DefaultMemoryOvercommit))
	return cpu, mem, func() error {
		for _, f := range []struct {
			name string
			v    float64
		}{{"cpu-overcommit", *cpu}, {"memory-overcommit", *mem}} {
			if cmd.Flags().Changed(f.name) && !(f.v > 0) {
				return fmt.Errorf("--%s must be above 0, got %g", f.name, f.v)
			}
		}
		return nil
	}
}

// clusterColumns are the columns of vdc cluster ls.
func clusterColumns(now time.Time) []column[*api.Cluster] {
	return []column[*api.Cluster]{
		{header: "name", value: func(o *api.Cluster) string { return o.Metadata.Name }},
		{header: "datacenter", value: func(o *api.Cluster) string { return o.Spec.Datacenter.String() }},
		{header: "hosts", value: func(o *api.Cluster) string { return usedOf(o.Status.ConnectedHosts, o.Status.Hosts) }},
		{header: "vms", value: func(o *api.Cluster) string { return strconv.Itoa(o.Status.VMs) }},
		{header: "cpu", value: func(o *api.Cluster) string { return usedOf(o.Status.UsedCPUs, o.Status.CPUs) }},
		{header: "memory", value: func(o *api.Cluster) string { return usedOf(o.Status.UsedMemory, o.Status.MemoryBytes) }},
		{header: "overcommit", value: func(o *api.Cluster) string {
			return fmt.Sprintf("cpu %gx, mem %gx", o.Spec.CPUOvercommit, o.Spec.MemoryOvercommit)
		}},
		{header: "ha", value: func(o *api.Cluster) string { return haSummary(o.Spec.HA) }},
		{header: "age", value: func(o *api.Cluster) string { return age(now, o.Metadata.Created) }},
	}
}

// clusterInfo is vdc cluster info.
func clusterInfo(v *infoView, o *api.Cluster, now time.Time) {
	metaInfo(v, &o.Metadata, now)
	v.add("Datacenter", o.Spec.Datacenter.String())
	v.add("Description", o.Spec.Description)
	v.add("Hosts", fmt.Sprintf("%d (%d connected)", o.Status.Hosts, o.Status.ConnectedHosts))
	v.add("VMs", strconv.Itoa(o.Status.VMs))
	v.add("CPU", usedOf(o.Status.UsedCPUs, o.Status.CPUs)+" (vCPUs of powered-on VMs/physical)")
	v.add("Memory", usedOf(o.Status.UsedMemory, o.Status.MemoryBytes))
	v.add("CPU overcommit", fmt.Sprintf("%gx", o.Spec.CPUOvercommit))
	v.add("Memory overcommit", fmt.Sprintf("%gx", o.Spec.MemoryOvercommit))
	haInfo(v, o.Spec.HA)
}

// clusterCreateFlags are the flags of vdc cluster create.
func clusterCreateFlags(cmd *cobra.Command) func(string) (any, error) {
	m := addMetaFlags(cmd, false, true)
	dc := cmd.Flags().String("datacenter", "", "datacenter (default: the only one)")
	cpu, mem, check := overcommitFlags(cmd)
	ha := haFlags(cmd)
	return func(name string) (any, error) {
		if err := check(); err != nil {
			return nil, err
		}
		hu, err := ha()
		if err != nil {
			return nil, err
		}
		labels, err := m.labelMap()
		return api.ClusterCreateRequest{Name: name, Datacenter: *dc, Description: m.description, Labels: labels,
			CPUOvercommit: *cpu, MemoryOvercommit: *mem, HA: hu}, err
	}
}

// clusterUpdateFlags are the flags of vdc cluster update.
func clusterUpdateFlags(cmd *cobra.Command) func() (any, error) {
	m := addMetaFlags(cmd, true, true)
	cpu, mem, check := overcommitFlags(cmd)
	ha := haFlags(cmd)
	return func() (any, error) {
		if err := check(); err != nil {
			return nil, err
		}
		hu, err := ha()
		if err != nil {
			return nil, err
		}
		mc, err := m.change("cluster")
		return api.ClusterUpdateRequest{Name: mc.name, Description: mc.description, Labels: mc.labels,
			CPUOvercommit: changed(cmd, "cpu-overcommit", *cpu), MemoryOvercommit: changed(cmd, "memory-overcommit", *mem), HA: hu}, err
	}
}

func newDatastoreCmd(g *globals) *cobra.Command {
	kindOf := func(o *api.Datastore) string {
		if o.Spec.Shared {
			return "shared"
		}
		return "local (" + o.Spec.Host.String() + ")"
	}
	d := &nounDef[*api.Datastore]{
		kind: api.KindDatastore, singular: "datastore", plural: "datastores",
		use: "datastore", aliases: []string{"ds"},
		short: "Manage datastores, the directories that hold VM disks",
		columns: func(now time.Time) []column[*api.Datastore] {
			return []column[*api.Datastore]{
				{header: "name", value: func(o *api.Datastore) string { return o.Metadata.Name }},
				{header: "type", value: kindOf},
				{header: "path", value: func(o *api.Datastore) string { return o.Spec.Path }},
				{header: "capacity", value: func(o *api.Datastore) string { return sizeOrEmpty(o.Status.CapacityBytes) }},
				{header: "free", value: func(o *api.Datastore) string { return sizeOrEmpty(o.Status.FreeBytes) }},
				{header: "provisioned", value: func(o *api.Datastore) string { return o.Status.ProvisionedBytes.String() }},
				{header: "allocated", value: func(o *api.Datastore) string { return o.Status.AllocatedBytes.String() }},
				{header: "overcommit", value: datastoreOvercommit},
				{header: "alarm", value: func(o *api.Datastore) string { return o.Status.Alarm }},
				{header: "hosts", value: func(o *api.Datastore) string { return strconv.Itoa(len(o.Status.Hosts)) }},
			}
		},
		info: func(v *infoView, o *api.Datastore, now time.Time) {
			metaInfo(v, &o.Metadata, now)
			v.add("Datacenter", o.Spec.Datacenter.String())
			v.add("Type", kindOf(o))
			v.add("Path", o.Spec.Path)
			v.add("Description", o.Spec.Description)
			v.add("Capacity", sizeOrEmpty(o.Status.CapacityBytes))
			v.add("Free", sizeOrEmpty(o.Status.FreeBytes))
			v.add("Provisioned", o.Status.ProvisionedBytes.String())
			v.add("Allocated", o.Status.AllocatedBytes.String())
			v.add("Over-commit", datastoreOvercommit(o))
			v.add("Alarm", o.Status.Alarm)
			v.add("Hosts", refs(o.Status.Hosts))
		},
		create: func(cmd *cobra.Command) func(string) (any, error) {
			m := addMetaFlags(cmd, false, true)
			path := cmd.Flags().String("path", "", "directory of the datastore, the same on every host that shares it (required)")
			host := cmd.Flags().String("host", "", "make the datastore local to this host (default: shared by the datacenter's hosts)")
			dc := cmd.Flags().String("datacenter", "", "datacenter (default: the only one)")
			_ = cmd.MarkFlagRequired("path")
			return func(name string) (any, error) {
				labels, err := m.labelMap()
				return api.DatastoreCreateRequest{Name: name, Datacenter: *dc, Path: *path, Host: *host,
					Description: m.description, Labels: labels}, err
			}
		},
		createExample: "  vdc ds create nfs1 --path /mnt/nfs1\n  vdc ds create scratch --path /var/lib/vdc/scratch --host esx1",
		update: func(cmd *cobra.Command) func() (any, error) {
			m := addMetaFlags(cmd, true, true)
			return func() (any, error) {
				mc, err := m.change("datastore")
				return api.DatastoreUpdateRequest{Name: mc.name, Description: mc.description, Labels: mc.labels}, err
			}
		},
		updateExample: "  vdc ds update nfs1 --label tier=gold",
		listFlags:     datacenterFilter,
	}
	return d.command(g)
}

func newPortGroupCmd(g *globals) *cobra.Command {
	vlan := func(n int) string {
		if n == 0 {
			return "untagged"
		}
		return strconv.Itoa(n)
	}
	d := &nounDef[*api.PortGroup]{
		kind: api.KindPortGroup, singular: "port group", plural: "port groups",
		use: "portgroup", aliases: []string{"pg"},
		short: "Manage port groups, the networks VM NICs attach to",
		columns: func(now time.Time) []column[*api.PortGroup] {
			return []column[*api.PortGroup]{
				{header: "name", value: func(o *api.PortGroup) string { return o.Metadata.Name }},
				{header: "datacenter", value: func(o *api.PortGroup) string { return o.Spec.Datacenter.String() }},
				{header: "vlan", value: func(o *api.PortGroup) string { return vlan(o.Spec.VLAN) }},
				{header: "ports", value: func(o *api.PortGroup) string { return strconv.Itoa(o.Status.Ports) }},
				{header: "age", value: func(o *api.PortGroup) string { return age(now, o.Metadata.Created) }},
			}
		},
		info: func(v *infoView, o *api.PortGroup, now time.Time) {
			metaInfo(v, &o.Metadata, now)
			v.add("Datacenter", o.Spec.Datacenter.String())
			v.add("VLAN", vlan(o.Spec.VLAN))
			v.add("Ports", strconv.Itoa(o.Status.Ports))
			v.add("Description", o.Spec.Description)
		},
		create: func(cmd *cobra.Command) func(string) (any, error) {
			m := addMetaFlags(cmd, false, true)
			id := cmd.Flags().Int("vlan", 0, "VLAN ID, 1-4094 (default: untagged)")
			dc := cmd.Flags().String("datacenter", "", "datacenter (default: the only one)")
			return func(name string) (any, error) {
				labels, err := m.labelMap()
				return api.PortGroupCreateRequest{Name: name, Datacenter: *dc, VLAN: *id, Description: m.description, Labels: labels}, err
			}
		},
		createExample: "  vdc pg create vm-network\n  vdc pg create dmz --vlan 20",
		update: func(cmd *cobra.Command) func() (any, error) {
			m := addMetaFlags(cmd, true, true)
			id := cmd.Flags().Int("vlan", 0, "VLAN ID, 1-4094; 0 for untagged")
			return func() (any, error) {
				mc, err := m.change("port group")
				return api.PortGroupUpdateRequest{Name: mc.name, Description: mc.description, Labels: mc.labels,
					VLAN: changed(cmd, "vlan", *id)}, err
			}
		},
		updateExample: "  vdc pg update dmz --vlan 30",
		listFlags:     datacenterFilter,
	}
	return d.command(g)
}

// metaInfo adds the fields every object has to an info view.
func metaInfo(v *infoView, m *api.ObjectMeta, now time.Time) {
	v.add("Name", m.Name)
	v.add("ID", m.ID)
	v.add("Labels", labelString(m.Labels))
	v.add("Created", timeAndAge(now, m.Created))
}
