package client

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/vdc-project/vdc/api"
)

// The inventory `vdc up` makes on its first run, and the benchmarks run on.
const (
	DefaultDatacenter = "dc1"
	DefaultCluster    = "cluster1"
	DefaultDatastore  = "datastore1"
	DefaultPortGroup  = "vm-network"
	// The default network of hosts that realize switches (vdc up as root).
	DefaultSwitch = "dvs1"
	DefaultVNI    = 1001
	DefaultSubnet = "192.168.100.0/24"
)

// Bootstrap creates the default datacenter, cluster, datastore (the
// directory dsPath, made here: for a server on this machine) and port
// group, each unless it exists. With withSwitch the port group is a VXLAN
// overlay with DHCP on the distributed switch DefaultSwitch (hosts that
// can realize it: vdc up's, in network namespaces); else a NAT network.
func (c *Client) Bootstrap(ctx context.Context, dsPath string, withSwitch bool) error {
	if err := os.MkdirAll(dsPath, 0o755); err != nil {
		return err
	}
	type step struct {
		kind, name string
		req        any
	}
	steps := []step{
		{api.KindDatacenter, DefaultDatacenter, api.DatacenterCreateRequest{Name: DefaultDatacenter}},
		{api.KindCluster, DefaultCluster, api.ClusterCreateRequest{Name: DefaultCluster, Datacenter: DefaultDatacenter}},
		{api.KindDatastore, DefaultDatastore, api.DatastoreCreateRequest{Name: DefaultDatastore, Datacenter: DefaultDatacenter, Path: dsPath}},
		{api.KindPortGroup, DefaultPortGroup, api.PortGroupCreateRequest{Name: DefaultPortGroup, Datacenter: DefaultDatacenter}},
	}
	if withSwitch {
		steps = append(steps[:3],
			step{api.KindSwitch, DefaultSwitch, api.SwitchCreateRequest{Name: DefaultSwitch, Cluster: DefaultCluster}},
			step{api.KindPortGroup, DefaultPortGroup, api.PortGroupCreateRequest{Name: DefaultPortGroup, Switch: DefaultSwitch,
				VNI: DefaultVNI, DHCP: &api.PortGroupDHCP{Subnet: DefaultSubnet}}})
	}
	for _, s := range steps {
		err := c.Do(ctx, Request{Method: "GET", Path: "/" + s.kind + "/" + s.name}, nil)
		if err == nil {
			continue
		}
		if !errors.Is(err, api.ErrNotFound) {
			return err
		}
		t, err := c.Create(ctx, s.kind, s.req)
		if err == nil {
			_, err = c.Wait(ctx, t)
		}
		if err != nil {
			return fmt.Errorf("create %s %s: %w", api.Singular(s.kind), s.name, err)
		}
	}
	return nil
}
