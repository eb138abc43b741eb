package inventorycmd

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

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

func NewDatacenterCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Datacenter]{
		Kind: api.KindDatacenter, Singular: "datacenter", Plural: "datacenters",
		Use: "datacenter", Aliases: []string{"dc"},
		Short: "Manage datacenters, the top of the inventory",
		Columns: func(now time.Time) []cmdutil.Column[*api.Datacenter] {
			return []cmdutil.Column[*api.Datacenter]{
				{Header: "name", Value: func(o *api.Datacenter) string { return o.Metadata.Name }},
				{Header: "description", Value: func(o *api.Datacenter) string { return cmdutil.Truncate(o.Spec.Description, 50) }},
				{Header: "age", Value: func(o *api.Datacenter) string { return cmdutil.Age(now, o.Metadata.Created) }},
			}
		},
		Info: func(v *cmdutil.InfoView, o *api.Datacenter, now time.Time) {
			cmdutil.MetaInfo(v, &o.Metadata, now)
			v.Add("Description", o.Spec.Description)
		},
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, true)
			return func(name string) (any, error) {
				labels, err := m.LabelMap()
				return api.DatacenterCreateRequest{Name: name, Description: m.Description, Labels: labels}, err
			}
		},
		CreateExample: "  vdc dc create dc1 --description 'main site'",
		Update: func(cmd *cobra.Command) func() (any, error) {
			m := cmdutil.AddMetaFlags(cmd, true, true)
			return func() (any, error) {
				mc, err := m.Change("datacenter")
				return api.DatacenterUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels}, err
			}
		},
		UpdateExample: "  vdc dc update dc1 --name paris --label site=paris",
	}
	return d.Command(g)
}

func NewClusterCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Cluster]{
		Kind: api.KindCluster, Singular: "cluster", Plural: "clusters", Use: "cluster",
		Short:         "Manage clusters, the groups of hosts that VMs are placed on",
		Columns:       clusterColumns,
		Info:          clusterInfo,
		Create:        clusterCreateFlags,
		CreateExample: "  vdc cluster create prod --datacenter dc1 --cpu-overcommit 2",
		Update:        clusterUpdateFlags,
		UpdateExample: `  vdc cluster update prod --memory-overcommit 1.5
  vdc cluster update prod --ha on --ha-admission-control host-failures --ha-vm-monitoring on
  vdc cluster update prod --ha-failure-detection 3s --ha-isolation-response shutdown`,
		ListFlags: datacenterFilter,
	}
	return d.Command(g)
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
func clusterColumns(now time.Time) []cmdutil.Column[*api.Cluster] {
	return []cmdutil.Column[*api.Cluster]{
		{Header: "name", Value: func(o *api.Cluster) string { return o.Metadata.Name }},
		{Header: "datacenter", Value: func(o *api.Cluster) string { return o.Spec.Datacenter.String() }},
		{Header: "hosts", Value: func(o *api.Cluster) string { return cmdutil.UsedOf(o.Status.ConnectedHosts, o.Status.Hosts) }},
		{Header: "vms", Value: func(o *api.Cluster) string { return strconv.Itoa(o.Status.VMs) }},
		{Header: "cpu", Value: func(o *api.Cluster) string { return cmdutil.UsedOf(o.Status.UsedCPUs, o.Status.CPUs) }},
		{Header: "memory", Value: func(o *api.Cluster) string { return cmdutil.UsedOf(o.Status.UsedMemory, o.Status.MemoryBytes) }},
		{Header: "overcommit", Value: func(o *api.Cluster) string {
			return fmt.Sprintf("cpu %gx, mem %gx", o.Spec.CPUOvercommit, o.Spec.MemoryOvercommit)
		}},
		{Header: "ha", Value: func(o *api.Cluster) string { return haSummary(o.Spec.HA) }},
		{Header: "age", Value: func(o *api.Cluster) string { return cmdutil.Age(now, o.Metadata.Created) }},
	}
}

// clusterInfo is vdc cluster info.
func clusterInfo(v *cmdutil.InfoView, o *api.Cluster, now time.Time) {
	cmdutil.MetaInfo(v, &o.Metadata, now)
	v.Add("Datacenter", o.Spec.Datacenter.String())
	v.Add("Description", o.Spec.Description)
	v.Add("Hosts", fmt.Sprintf("%d (%d connected)", o.Status.Hosts, o.Status.ConnectedHosts))
	v.Add("VMs", strconv.Itoa(o.Status.VMs))
	v.Add("CPU", cmdutil.UsedOf(o.Status.UsedCPUs, o.Status.CPUs)+" (vCPUs of powered-on VMs/physical)")
	v.Add("Memory", cmdutil.UsedOf(o.Status.UsedMemory, o.Status.MemoryBytes))
	v.Add("CPU overcommit", fmt.Sprintf("%gx", o.Spec.CPUOvercommit))
	v.Add("Memory overcommit", fmt.Sprintf("%gx", o.Spec.MemoryOvercommit))
	haInfo(v, o.Spec.HA)
}

// clusterCreateFlags are the flags of vdc cluster create.
func clusterCreateFlags(cmd *cobra.Command) func(string) (any, error) {
	m := cmdutil.AddMetaFlags(cmd, false, true)
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
		labels, err := m.LabelMap()
		return api.ClusterCreateRequest{Name: name, Datacenter: *dc, Description: m.Description, Labels: labels,
			CPUOvercommit: *cpu, MemoryOvercommit: *mem, HA: hu}, err
	}
}

// clusterUpdateFlags are the flags of vdc cluster update.
func clusterUpdateFlags(cmd *cobra.Command) func() (any, error) {
	m := cmdutil.AddMetaFlags(cmd, true, true)
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
		mc, err := m.Change("cluster")
		return api.ClusterUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels,
			CPUOvercommit: cmdutil.Changed(cmd, "cpu-overcommit", *cpu), MemoryOvercommit: cmdutil.Changed(cmd, "memory-overcommit", *mem), HA: hu}, err
	}
}

func NewDatastoreCmd(g *cmdutil.Globals) *cobra.Command {
	kindOf := func(o *api.Datastore) string {
		if o.Spec.Shared {
			return "shared"
		}
		return "local (" + o.Spec.Host.String() + ")"
	}
	d := &cmdutil.Noun[*api.Datastore]{
		Kind: api.KindDatastore, Singular: "datastore", Plural: "datastores",
		Use: "datastore", Aliases: []string{"ds"},
		Short: "Manage datastores, the directories that hold VM disks",
		Columns: func(now time.Time) []cmdutil.Column[*api.Datastore] {
			return []cmdutil.Column[*api.Datastore]{
				{Header: "name", Value: func(o *api.Datastore) string { return o.Metadata.Name }},
				{Header: "type", Value: kindOf},
				{Header: "path", Value: func(o *api.Datastore) string { return o.Spec.Path }},
				{Header: "capacity", Value: func(o *api.Datastore) string { return cmdutil.SizeOrEmpty(o.Status.CapacityBytes) }},
				{Header: "free", Value: func(o *api.Datastore) string { return cmdutil.SizeOrEmpty(o.Status.FreeBytes) }},
				{Header: "provisioned", Value: func(o *api.Datastore) string { return o.Status.ProvisionedBytes.String() }},
				{Header: "allocated", Value: func(o *api.Datastore) string { return o.Status.AllocatedBytes.String() }},
				{Header: "overcommit", Value: datastoreOvercommit},
				{Header: "alarm", Value: func(o *api.Datastore) string { return o.Status.Alarm }},
				{Header: "hosts", Value: func(o *api.Datastore) string { return strconv.Itoa(len(o.Status.Hosts)) }},
			}
		},
		Info: func(v *cmdutil.InfoView, o *api.Datastore, now time.Time) {
			cmdutil.MetaInfo(v, &o.Metadata, now)
			v.Add("Datacenter", o.Spec.Datacenter.String())
			v.Add("Type", kindOf(o))
			v.Add("Path", o.Spec.Path)
			v.Add("Description", o.Spec.Description)
			v.Add("Capacity", cmdutil.SizeOrEmpty(o.Status.CapacityBytes))
			v.Add("Free", cmdutil.SizeOrEmpty(o.Status.FreeBytes))
			v.Add("Provisioned", o.Status.ProvisionedBytes.String())
			v.Add("Allocated", o.Status.AllocatedBytes.String())
			v.Add("Over-commit", datastoreOvercommit(o))
			v.Add("Alarm", o.Status.Alarm)
			v.Add("Hosts", cmdutil.Refs(o.Status.Hosts))
		},
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, true)
			path := cmd.Flags().String("path", "", "directory of the datastore, the same on every host that shares it (required)")
			host := cmd.Flags().String("host", "", "make the datastore local to this host (default: shared by the datacenter's hosts)")
			dc := cmd.Flags().String("datacenter", "", "datacenter (default: the only one)")
			_ = cmd.MarkFlagRequired("path")
			return func(name string) (any, error) {
				labels, err := m.LabelMap()
				return api.DatastoreCreateRequest{Name: name, Datacenter: *dc, Path: *path, Host: *host,
					Description: m.Description, Labels: labels}, err
			}
		},
		CreateExample: "  vdc ds create nfs1 --path /mnt/nfs1\n  vdc ds create scratch --path /var/lib/vdc/scratch --host esx1",
		Update: func(cmd *cobra.Command) func() (any, error) {
			m := cmdutil.AddMetaFlags(cmd, true, true)
			return func() (any, error) {
				mc, err := m.Change("datastore")
				return api.DatastoreUpdateRequest{Name: mc.Name, Description: mc.Description, Labels: mc.Labels}, err
			}
		},
		UpdateExample: "  vdc ds update nfs1 --label tier=gold",
		ListFlags:     datacenterFilter,
	}
	return d.Command(g)
}

func datastoreOvercommit(o *api.Datastore) string {
	if o.Status.OvercommitRatio == 0 {
		return ""
	}
	return fmt.Sprintf("%.3gx", o.Status.OvercommitRatio)
}
