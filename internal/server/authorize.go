package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/control/rights"
)

// checkAccess runs h only when the caller holds what a says (see
// routeAccess): on the root, or on the object the path names; lists
// filter what they answer themselves (canRead). An object the caller may
// not even see is "not found".
func (s *Server) checkAccess(a access, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		who, _ := auth.From(r.Context())
		switch a.on {
		case onAny, onList:
			return h(w, r)
		case onBody:
			if !rights.Unrestricted(who) && !a.self && !s.perms.HoldsAnywhere(who, a.priv) {
				return api.Errorf(api.ErrForbidden, "user %s holds %s on no object", who.User, a.priv)
			}
			return h(w, r)
		case onRoot:
			if err := s.authz.Authorize(r.Context(), who, string(a.priv), "", ""); err != nil {
				return err
			}
			return h(w, r)
		}
		if err := s.cache.Sync(r.Context()); err != nil {
			return err
		}
		key := r.PathValue("name")
		if a.on == api.KindTask {
			key = r.PathValue("id")
		}
		o, err := s.inv.Lookup(a.on, key) // a folder by its path too
		if err != nil {
			return h(w, r) // its 404
		}
		priv := a.priv
		if a.byAction != nil {
			action, err := peekAction(r)
			if err != nil {
				return err
			}
			if p, ok := a.byAction[action]; ok {
				priv = p
			}
		}
		audit.SetObject(r.Context(), a.on+":"+o.GetMeta().Name, string(priv))
		if err := s.authz.Authorize(r.Context(), who, string(priv), a.on, o.GetMeta().ID); err != nil {
			return err
		}
		return h(w, r)
	}
}

// noteCall notes the route (and the privilege it needs) in the request's
// audit record.
func noteCall(route string, priv authz.Privilege, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		audit.SetCall(r.Context(), route, string(priv))
		return h(w, r)
	}
}

// peekAction reads the "action" of a JSON body and leaves the body for
// the handler to decode.
func peekAction(r *http.Request) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return "", api.Errorf(api.ErrInvalid, "read the request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	var v struct {
		Action string `json:"action"`
	}
	_ = json.Unmarshal(b, &v) // the handler answers a bad body
	return v.Action, nil
}

// readable keeps of objs those the request's caller may see (System.Read):
// what lists answer. Call it outside the cache's callbacks.
func readable[T api.Object](s *Server, r *http.Request, objs []T) []T {
	who, _ := auth.From(r.Context())
	if rights.Unrestricted(who) {
		return objs
	}
	return slices.DeleteFunc(objs, func(o T) bool { return !s.perms.CanRead(who, o) })
}

// eventVisible says which events the request's caller may see: those of
// objects (and tasks) it may read; for others than the admin, not those
// of objects that are gone.
func (s *Server) eventVisible(r *http.Request) func(api.Event) bool {
	who, _ := auth.From(r.Context())
	if rights.Unrestricted(who) {
		return func(api.Event) bool { return true }
	}
	return func(e api.Event) bool {
		if e.Task != nil {
			return s.perms.CanRead(who, e.Task)
		}
		o, ok := s.cache.Get(e.Kind, e.ID)
		return ok && s.perms.CanRead(who, o)
	}
}

// admitVM checks, for a VM about to be made, the caller's rights where it
// goes, as vSphere does: VirtualMachine.Inventory.Create on its folder (the
// datacenter's top level when none) and on its cluster (and its host when
// the request names one), Datastore.AllocateSpace on the datastores of
// its disks, Network.Assign on the port groups of its NICs.
func (s *Server) admitVM(ctx context.Context, vm *api.VM) error {
	who, _ := auth.From(ctx)
	if rights.Unrestricted(who) {
		return nil
	}
	check := func(priv authz.Privilege, kind, id string) error {
		if id == "" {
			return nil
		}
		return s.authz.Authorize(ctx, who, string(priv), kind, id)
	}
	where := vm.Spec.Folder.ID
	kind := api.KindFolder
	if where == "" {
		if c, ok := s.cache.Get(api.KindCluster, vm.Spec.Cluster.ID); ok {
			kind, where = api.KindDatacenter, c.(*api.Cluster).Spec.Datacenter.ID
		}
	}
	errs := []error{check(authz.VMCreate, kind, where), check(authz.VMCreate, api.KindCluster, vm.Spec.Cluster.ID),
		check(authz.VMCreate, api.KindHost, vm.Spec.Host.ID)}
	for _, d := range vm.Spec.Disks {
		errs = append(errs, check(authz.DatastoreAllocate, api.KindDatastore, d.Datastore.ID))
	}
	for _, n := range vm.Spec.NICs {
		errs = append(errs, check(authz.NetworkAssign, api.KindPortGroup, n.PortGroup.ID))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
