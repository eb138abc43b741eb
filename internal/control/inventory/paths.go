package inventory

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/api"
)

// Paths on the hosts that a request names (a datastore's directory, an
// image to copy, an ISO to attach) are read and written by the agents as
// root. They are checked here, on the path as written, and again by the
// agent, with symlinks resolved, before it touches one.

// CheckDatastorePath refuses a new datastore's path when it is no place
// for one (api.ValidateDatastorePath) or when it is, holds or lies inside
// another datastore that a host would see along with it: two such
// datastores would hold each other's files (and deleting one's VM folders
// would reach into the other). A local datastore (host set) clashes with
// the shared ones and with the other local ones of its host; a shared one
// with every datastore.
func (in *Inventory) CheckDatastorePath(path, hostID string) error {
	if err := api.ValidateDatastorePath(path); err != nil {
		return err
	}
	// The server's own data (etcd, the CA's key, the admin token) may be
	// on a host's file system too, as under vdc up.
	if data, err := filepath.Abs(in.ServerDataDir); err == nil && api.PathsOverlap(data, path) {
		return api.Errorf(api.ErrInvalid, "datastore path %s overlaps the server's data directory %s; give a directory of its own", path, data)
	}
	var clash *api.Datastore
	in.St.Cache.Each(api.KindDatastore, func(o api.Object) {
		ds := o.(*api.Datastore)
		if clash != nil || !(hostID == "" || ds.Spec.Shared || ds.Spec.Host.ID == hostID) {
			return
		}
		if api.PathsOverlap(filepath.Clean(ds.Spec.Path), path) {
			clash = ds
		}
	})
	if clash == nil {
		return nil
	}
	how := "is inside"
	switch other := filepath.Clean(clash.Spec.Path); {
	case other == path:
		how = "is the directory of"
	case api.PathWithin(path, other):
		how = "holds"
	}
	return api.Errorf(api.ErrConflict, "datastore path %s %s datastore %s (%s): datastores may not share files; give a directory of its own",
		path, how, clash.Metadata.Name, clash.Spec.Path)
}

// DatastoreHolding finds the datastore a host path is in, among those
// keep accepts: the path is a file inside its directory (not the
// directory itself).
func (in *Inventory) DatastoreHolding(p string, keep func(api.Object) bool) (*api.Datastore, bool) {
	var found *api.Datastore
	in.St.Cache.Each(api.KindDatastore, func(o api.Object) {
		ds := o.(*api.Datastore)
		root := filepath.Clean(ds.Spec.Path)
		if found == nil && p != root && api.PathWithin(root, p) && (keep == nil || keep(o)) {
			found = ds
		}
	})
	return found, found != nil
}

// DatastoreOf is the ID of the datastore holding a host path ("" for none).
func (in *Inventory) DatastoreOf(p string) string {
	if ds, ok := in.DatastoreHolding(p, nil); ok {
		return ds.Metadata.ID
	}
	return ""
}

// CheckHostFile checks a path a request names on the hosts: absolute,
// clean, plain text and a file in one of the datastores keep accepts. The
// message is the same whether the path exists or not, and whatever it is
// outside the datastores: the answer tells nothing of the host's files.
//
// want says what p may be ("a file in a datastore", "an http(s) URL or a
// file in a datastore"); hint, what to do about a file elsewhere.
func (in *Inventory) CheckHostFile(what, p, want, hint string, keep func(api.Object) bool) (*api.Datastore, error) {
	if err := api.ValidateText(what, p); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return nil, api.Errorf(api.ErrInvalid, "%s %q is not %s (a clean absolute path)", what, p, want)
	}
	ds, ok := in.DatastoreHolding(p, keep)
	if !ok {
		return nil, api.Errorf(api.ErrInvalid, "%s %s is not %s%s%s", what, p, want, in.datastoreHint(keep), hint)
	}
	return ds, nil
}

// datastoreHint lists where files may be, for the error of checkHostFile.
func (in *Inventory) datastoreHint(keep func(api.Object) bool) string {
	var roots []string
	in.St.Cache.Each(api.KindDatastore, func(o api.Object) {
		if keep == nil || keep(o) {
			roots = append(roots, o.GetMeta().Name+" ("+o.(*api.Datastore).Spec.Path+")")
		}
	})
	if len(roots) == 0 {
		return ""
	}
	return fmt.Sprintf(" (datastores: %s)", strings.Join(roots, ", "))
}
