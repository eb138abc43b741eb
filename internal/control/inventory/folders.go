package inventory

import (
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// FolderChain is folder id and the folders it is in, innermost first
// (none for "", the top level).
func FolderChain(st *state.State, id string) []*api.Folder {
	var out []*api.Folder
	for id != "" && len(out) <= api.MaxFolderDepth {
		f, ok := state.Get[*api.Folder](st, id)
		if !ok {
			break
		}
		out = append(out, f)
		id = f.Spec.Parent.ID
	}
	return out
}

// FolderPath is the path of folder id in its datacenter ("/web/prod");
// "/" for "", the top level.
func FolderPath(st *state.State, id string) string {
	chain := FolderChain(st, id)
	names := make([]string, len(chain))
	for i, f := range chain {
		names[len(chain)-1-i] = f.Metadata.Name
	}
	return "/" + strings.Join(names, "/")
}

// VMDatacenter is the ID of the datacenter a VM is in (its cluster's).
func (in *Inventory) VMDatacenter(vm *api.VM) string {
	if cl, ok := state.Get[*api.Cluster](in.St, vm.Spec.Cluster.ID); ok {
		return cl.Spec.Datacenter.ID
	}
	return ""
}

// Folder finds a folder: by ID; by path in its datacenter ("/web/prod",
// or "dc1:/web/prod" to say which datacenter); or by name, when one
// folder only has it. dcID, when set, is the datacenter the folder must
// be in (a path is looked for there); without it a path must be in one
// datacenter only.
func (in *Inventory) Folder(ref, dcID string) (*api.Folder, error) {
	if ref == "" {
		return nil, api.Errorf(api.ErrInvalid, "no folder given")
	}
	f, ok := state.Get[*api.Folder](in.St, ref)
	if !ok {
		var err error
		if f, err = in.findFolder(ref, dcID); err != nil {
			return nil, err
		}
	}
	if dcID != "" && f.Spec.Datacenter.ID != dcID {
		return nil, api.Errorf(api.ErrInvalid, "folder %s is in datacenter %s, not %s", ref, in.name(api.KindDatacenter, f.Spec.Datacenter.ID), in.name(api.KindDatacenter, dcID))
	}
	return f, nil
}

// findFolder is Folder by path or name.
func (in *Inventory) findFolder(ref, dcID string) (*api.Folder, error) {
	path := ref
	if dc, p, ok := strings.Cut(ref, ":"); ok {
		d, err := in.Lookup(api.KindDatacenter, dc)
		if err != nil {
			return nil, err
		}
		if dcID != "" && d.GetMeta().ID != dcID {
			return nil, api.Errorf(api.ErrInvalid, "folder %s is in datacenter %s, not %s", ref, dc, in.name(api.KindDatacenter, dcID))
		}
		path, dcID = p, d.GetMeta().ID
		if !strings.HasPrefix(path, "/") {
			return nil, api.Errorf(api.ErrInvalid, "folder %q: give DATACENTER:/PATH, like dc1:/web", ref)
		}
	}
	if !strings.HasPrefix(path, "/") {
		return in.folderNamed(ref, dcID)
	}
	names, err := api.SplitFolderPath(path)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, api.Errorf(api.ErrInvalid, "/ is the top level of a datacenter, not a folder")
	}
	dcs := []string{dcID}
	if dcID == "" {
		dcs = nil
		state.Each(in.St, func(d *api.Datacenter) { dcs = append(dcs, d.Metadata.ID) })
	}
	var found []*api.Folder
	for _, dc := range dcs {
		if f := in.folderAt(dc, names); f != nil {
			found = append(found, f)
		}
	}
	switch len(found) {
	case 0:
		return nil, api.Errorf(api.ErrNotFound, "folder %s not found", ref)
	case 1:
		return found[0], nil
	}
	return nil, api.Errorf(api.ErrInvalid, "%d datacenters have a folder %s: say which, like DATACENTER:%s, or give its ID", len(found), path, path)
}

// folderAt walks names down from datacenter dc's top level.
func (in *Inventory) folderAt(dc string, names []string) *api.Folder {
	scope := dc
	var f *api.Folder
	for _, n := range names {
		o, ok := in.St.Cache.Lookup(api.KindFolder, store.ScopedName(scope, n))
		if !ok {
			return nil
		}
		f = o.(*api.Folder)
		scope = f.Metadata.ID
	}
	return f
}

// folderNamed is the one folder (of datacenter dcID, when set) with
// this name.
func (in *Inventory) folderNamed(name, dcID string) (*api.Folder, error) {
	found := state.List(in.St, func(f *api.Folder) bool {
		return f.Metadata.Name == name && (dcID == "" || f.Spec.Datacenter.ID == dcID)
	})
	switch len(found) {
	case 0:
		return nil, api.Errorf(api.ErrNotFound, "folder %q not found", name)
	case 1:
		return found[0], nil
	}
	return nil, api.Errorf(api.ErrInvalid, "%d folders are named %s: give its path (/.../%s) or ID", len(found), name, name)
}

// FolderDest is where a VM of datacenter dcID goes for ref: nil, the top
// level, for "" and "/"; else the folder ref names, in dcID.
func (in *Inventory) FolderDest(ref, dcID string) (*api.Folder, error) {
	if ref == "" || ref == "/" {
		return nil, nil
	}
	return in.Folder(ref, dcID)
}

// FolderRef is the reference a VM keeps to a folder (none for the top).
func FolderRef(f *api.Folder) api.Ref {
	if f == nil {
		return api.Ref{}
	}
	return api.Ref{ID: f.Metadata.ID}
}

// KeepFolder makes txn depend on folder id (none for "") being still as
// the cache has it: a VM put in it does not land in a folder deleted (or
// renamed) meanwhile.
func (in *Inventory) KeepFolder(txn *store.Txn, id string) {
	if f, ok := state.Get[*api.Folder](in.St, id); ok {
		txn.Unchanged(f, api.Errorf(api.ErrConflict, "folder %s changed meanwhile; try again", f.Metadata.Name))
	}
}

// FolderIn is the folder named name directly in parent (or at the top of
// datacenter dcID when parent is ""), if there is one.
func (in *Inventory) FolderIn(dcID, parent, name string) (*api.Folder, bool) {
	scope := dcID
	if parent != "" {
		scope = parent
	}
	o, ok := in.St.Cache.Lookup(api.KindFolder, store.ScopedName(scope, name))
	if !ok {
		return nil, false
	}
	return o.(*api.Folder), true
}

// name is an object's name, or its ID when it is gone.
func (in *Inventory) name(kind, id string) string {
	if o, ok := in.St.Cache.Get(kind, id); ok {
		return o.GetMeta().Name
	}
	return id
}
