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
)

// Bootstrap creates the default datacenter, cluster, datastore (the
// directory dsPath, made here: for a server on this machine) and port
// group, each unless it exists.
func (c *Client) Bootstrap(ctx context.Context, dsPath string) error {
	if err := os.MkdirAll(dsPath, 0o755); err != nil {
		return err
	}
	steps := []struct {
		kind, name string
		req        any
	}{
		{api.KindDatacenter, DefaultDatacenter, api.DatacenterCreateRequest{Name: DefaultDatacenter}},
		{api.KindCluster, DefaultCluster, api.ClusterCreateRequest{Name: DefaultCluster, Datacenter: DefaultDatacenter}},
		{api.KindDatastore, DefaultDatastore, api.DatastoreCreateRequest{Name: DefaultDatastore, Datacenter: DefaultDatacenter, Path: dsPath}},
		{api.KindPortGroup, DefaultPortGroup, api.PortGroupCreateRequest{Name: DefaultPortGroup, Datacenter: DefaultDatacenter}},
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
