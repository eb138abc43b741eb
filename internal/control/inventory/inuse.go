package inventory

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
)

// InUse says what still depends on an object that is to be deleted: a
// datacenter's clusters, datastores, port groups and folders, a cluster's
// hosts and VMs, the VMs with a disk on a datastore or a NIC on a port
// group, a host's VMs, a folder's VMs and folders. The error (a
// conflict) counts each kind and names up to five of each: "cannot
// delete cluster "c1": it still has 2 hosts (h1, h2); 7 vms (a, b, c, d,
// e and 2 more)". Nil when nothing does.
func (in *Inventory) InUse(o api.Object) error {
	id := o.GetMeta().ID
	var users []string
	add := func(kind string, match func(api.Object) bool) {
		if u := in.users(kind, match); u != "" {
			users = append(users, u)
		}
	}
	switch o.(type) {
	case *api.Datacenter:
		for _, k := range []string{api.KindCluster, api.KindDatastore, api.KindSwitch, api.KindPortGroup, api.KindFolder} {
			add(k, func(x api.Object) bool { return DatacenterOf(x) == id })
		}
	case *api.Cluster:
		add(api.KindHost, func(x api.Object) bool { return x.(*api.Host).Spec.Cluster.ID == id })
		add(api.KindVM, func(x api.Object) bool { return x.(*api.VM).Spec.Cluster.ID == id })
		add(api.KindSwitch, func(x api.Object) bool { return x.(*api.Switch).Spec.Cluster.ID == id })
	case *api.Switch:
		add(api.KindPortGroup, func(x api.Object) bool { return x.(*api.PortGroup).Spec.Switch.ID == id })
	case *api.Datastore:
		add(api.KindVM, func(x api.Object) bool {
			for _, d := range x.(*api.VM).Spec.Disks {
				if d.Datastore.ID == id {
					return true
				}
			}
			return false
		})
	case *api.PortGroup:
		add(api.KindVM, func(x api.Object) bool {
			for _, n := range x.(*api.VM).Spec.NICs {
				if n.PortGroup.ID == id {
					return true
				}
			}
			return false
		})
	case *api.Host:
		add(api.KindVM, func(x api.Object) bool { return x.(*api.VM).Spec.Host.ID == id })
	case *api.Folder:
		add(api.KindVM, func(x api.Object) bool { return x.(*api.VM).Spec.Folder.ID == id })
		add(api.KindFolder, func(x api.Object) bool { return x.(*api.Folder).Spec.Parent.ID == id })
	}
	if len(users) > 0 {
		return api.Errorf(api.ErrConflict, "cannot delete %s %q: it still has %s", api.Singular(o.Kind()), o.GetMeta().Name, strings.Join(users, "; "))
	}
	return nil
}

// users counts the objects of a kind that match and names five of them:
// "7 vms (a, b, c, d, e and 2 more)"; "" when none do.
func (in *Inventory) users(kind string, match func(api.Object) bool) string {
	n := 0
	var names []string
	in.St.Cache.Each(kind, func(x api.Object) {
		if match(x) {
			n++
			if len(names) < 5 {
				names = append(names, x.GetMeta().Name)
			}
		}
	})
	if n == 0 {
		return ""
	}
	sort.Strings(names)
	more := ""
	if n > len(names) {
		more = fmt.Sprintf(" and %d more", n-len(names))
	}
	return fmt.Sprintf("%d %s (%s%s)", n, kind, strings.Join(names, ", "), more)
}
