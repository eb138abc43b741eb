package inventory

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
)

// CanCarryNICs says why host h cannot carry the NICs of vm (nil if it can):
// a NIC on a switch's port group needs a host of that switch's cluster.
func (in *Inventory) CanCarryNICs(vm *api.VM, h *api.Host) error {
	for _, n := range vm.Spec.NICs {
		pg, ok := state.Get[*api.PortGroup](in.St, n.PortGroup.ID)
		if !ok || pg.Spec.Switch.IsZero() {
			continue
		}
		sw, ok := state.Get[*api.Switch](in.St, pg.Spec.Switch.ID)
		if !ok {
			return api.Errorf(api.ErrConflict, "%s of vm %s is on port group %s, whose switch is gone", n.Name, vm.Metadata.Name, pg.Metadata.Name)
		}
		if sw.Spec.Cluster.ID != h.Spec.Cluster.ID {
			return api.Errorf(api.ErrConflict, "host %s does not have port group %s (%s of vm %s): its switch %s is on another cluster",
				h.Metadata.Name, pg.Metadata.Name, n.Name, vm.Metadata.Name, sw.Metadata.Name)
		}
	}
	return nil
}

// PortGroupInCluster says why a VM of cluster clusterID cannot have a NIC
// on port group pg (nil if it can): a switch's port groups are its
// cluster's.
func (in *Inventory) PortGroupInCluster(pg *api.PortGroup, clusterID string) error {
	if pg.Spec.Switch.IsZero() {
		return nil
	}
	sw, ok := state.Get[*api.Switch](in.St, pg.Spec.Switch.ID)
	if !ok {
		return api.Errorf(api.ErrConflict, "port group %s's switch is gone", pg.Metadata.Name)
	}
	if sw.Spec.Cluster.ID != clusterID {
		cl := clusterID
		if c, ok := state.Get[*api.Cluster](in.St, clusterID); ok {
			cl = c.Metadata.Name
		}
		return api.Errorf(api.ErrInvalid, "port group %s is on switch %s, which is not on the VM's cluster %s", pg.Metadata.Name, sw.Metadata.Name, cl)
	}
	return nil
}
