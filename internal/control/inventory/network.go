package inventory

import (
	"fmt"
	"net/netip"
	"path"

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
		if why := notRealized(h, sw.Metadata.ID, pg.Metadata.ID); why != "" {
			return api.Errorf(api.ErrConflict, "host %s has not realized port group %s (%s of vm %s): %s",
				h.Metadata.Name, pg.Metadata.Name, n.Name, vm.Metadata.Name, why)
		}
	}
	return nil
}

// notRealized is why host h reports switch sw's port group pg not
// realized; "" when it does not.
func notRealized(h *api.Host, sw, pg string) string {
	for _, r := range h.Status.Networks {
		if r.Switch != sw {
			continue
		}
		if r.Error != "" {
			return r.Error
		}
		return r.PortGroups[pg]
	}
	return ""
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

// NICAddress picks the lowest free address of port group pg's DHCP
// subnet for a new NIC ("" when pg has no DHCP subnet): not the network's, the
// broadcast's, the router's or the DHCP server's, nor one another NIC
// holds or taken (this request's).
func (in *Inventory) NICAddress(pg *api.PortGroup, taken map[string]bool) (string, error) {
	d := pg.Spec.DHCP
	if d == nil || d.Subnet == "" {
		return "", nil
	}
	prefix, err := netip.ParsePrefix(d.Subnet)
	if err != nil {
		return "", fmt.Errorf("port group %s: DHCP subnet %q: %w", pg.Metadata.Name, d.Subnet, err)
	}
	used := map[string]bool{d.Router: true, d.ServerIP: true}
	state.Each(in.St, func(vm *api.VM) {
		for _, n := range vm.Spec.NICs {
			if n.PortGroup.ID == pg.Metadata.ID {
				used[n.IPv4] = true
			}
		}
	})
	for c := range in.PendingClaims(IPClaim(pg.Metadata.ID, "")) {
		used[path.Base(c)] = true // given to a NIC being added or moved
	}
	prefix = prefix.Masked()
	last := LastUsable(prefix)
	for a := prefix.Addr().Next(); a.IsValid() && a.Compare(last) <= 0; a = a.Next() {
		if s := a.String(); !used[s] && !taken[s] {
			return s, nil
		}
	}
	return "", api.Errorf(api.ErrUnprocessable, "port group %s: its DHCP subnet %s has no free address left", pg.Metadata.Name, d.Subnet)
}

// LastUsable is the last address of an IPv4 prefix before its broadcast.
func LastUsable(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	v-- // not the broadcast
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
