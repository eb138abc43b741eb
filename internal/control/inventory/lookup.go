package inventory

import (
	"sort"

	"github.com/vdc-project/vdc/api"
)

func FirstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func SortByName(items []api.Object) {
	sort.Slice(items, func(i, j int) bool { return items[i].GetMeta().Name < items[j].GetMeta().Name })
}

// DatacenterOf returns the datacenter ID of a datacenter-scoped object.
func DatacenterOf(o api.Object) string {
	switch v := o.(type) {
	case *api.Cluster:
		return v.Spec.Datacenter.ID
	case *api.Datastore:
		return v.Spec.Datacenter.ID
	case *api.PortGroup:
		return v.Spec.Datacenter.ID
	case *api.Switch:
		return v.Spec.Datacenter.ID
	case *api.Folder:
		return v.Spec.Datacenter.ID
	}
	return ""
}

// Lookup finds an object by name or ID in the cache; a folder also by
// its path (see Folder).
func (in *Inventory) Lookup(kind, nameOrID string) (api.Object, error) {
	if nameOrID == "" {
		return nil, api.Errorf(api.ErrInvalid, "no %s given", api.Singular(kind))
	}
	if kind == api.KindFolder {
		f, err := in.Folder(nameOrID, "")
		if err != nil {
			return nil, err
		}
		return f, nil
	}
	o, ok := in.St.Cache.Lookup(kind, nameOrID)
	if !ok {
		return nil, api.Errorf(api.ErrNotFound, "%s %q not found", api.Singular(kind), nameOrID)
	}
	return o, nil
}

// Pick resolves an optional reference: the named object, or the only one
// of its kind that passes the filter when none is named.
func (in *Inventory) Pick(kind, nameOrID string, keep func(api.Object) bool) (api.Object, error) {
	if nameOrID != "" {
		o, err := in.Lookup(kind, nameOrID)
		if err != nil {
			return nil, err
		}
		if keep != nil && !keep(o) {
			return nil, api.Errorf(api.ErrInvalid, "%s %q cannot be used here (it belongs elsewhere)", api.Singular(kind), nameOrID)
		}
		return o, nil
	}
	var found []api.Object
	in.St.Cache.Each(kind, func(o api.Object) {
		if keep == nil || keep(o) {
			found = append(found, o)
		}
	})
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, api.Errorf(api.ErrInvalid, "there is no %s to use; create one first", api.Singular(kind))
	}
	return nil, api.Errorf(api.ErrInvalid, "there are %d %s; say which one", len(found), kind)
}
