package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/store"
)

// permissions is the datacenter's Authorizer: the roles and permissions
// in the cache, with the inventory's tree (see package authz). The policy
// is rebuilt when a role or permission changes, as the cache sees it: a
// removed permission stops working for every request after the change
// reached this server's cache (at once for requests that Sync).
type permissions struct {
	cache *store.Cache
	gen   atomic.Uint64 // role and permission changes seen

	mu    sync.Mutex
	built uint64
	pol   *authz.Policy
}

func newPermissions(c *store.Cache) *permissions {
	p := &permissions{cache: c}
	p.gen.Store(1)
	c.Observe(func(ch store.Change) {
		if ch.Kind == api.KindRole || ch.Kind == api.KindPermission {
			p.gen.Add(1)
		}
	})
	return p
}

// adminPermission is what the admin user always holds (api.AdminUser).
var adminPermission = authz.Permission{Object: authz.Root, Principal: api.AdminUser, Role: authz.RoleAdministrator, Propagate: true}

func (p *permissions) policy() *authz.Policy {
	g := p.gen.Load()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pol != nil && p.built == g {
		return p.pol
	}
	var roles []authz.Role
	for _, o := range p.cache.List(api.KindRole) {
		r := o.(*api.Role)
		ps := make([]authz.Privilege, len(r.Spec.Privileges))
		for i, x := range r.Spec.Privileges {
			ps[i] = authz.Privilege(x)
		}
		slices.Sort(ps)
		roles = append(roles, authz.Role{Name: r.Metadata.Name, Privileges: ps})
	}
	perms := []authz.Permission{adminPermission}
	for _, o := range p.cache.List(api.KindPermission) {
		x := o.(*api.Permission).Spec
		obj := authz.Root
		if x.Object.Kind != authz.Root.Kind {
			obj = authz.Object{Kind: x.Object.Kind, ID: x.Object.ID}
		}
		perms = append(perms, authz.Permission{Object: obj, Principal: x.Principal, Group: x.Group, Role: x.Role, Propagate: x.Propagate})
	}
	p.pol, p.built = authz.NewPolicy(roles, perms), g
	return p.pol
}

// rights are who's privileges on o (nil: the root), narrowed to its
// token's role if it has one.
func (p *permissions) rights(who auth.Principal, o api.Object) authz.Rights {
	obj, anc := p.place(o)
	pol := p.policy()
	r := pol.Rights(authz.Subject{User: who.User, Groups: who.Groups}, obj, anc)
	if who.Role != "" {
		r = pol.Narrow(r, who.Role)
	}
	return r
}

// Authorize implements auth.Authorizer: action is a privilege, kind and
// id the object (empty: the root). A caller who may not even see the
// object is told it does not exist, so that names do not leak.
func (p *permissions) Authorize(_ context.Context, who auth.Principal, action, kind, id string) error {
	var o api.Object
	if kind != "" {
		var ok bool
		if o, ok = p.cache.Get(kind, id); !ok {
			return nil // the handler answers 404
		}
	}
	r := p.rights(who, o)
	switch {
	case r.Has(authz.Privilege(action)):
		return nil
	case o != nil && !r.Has(authz.SystemRead):
		return api.Errorf(api.ErrNotFound, "%s %q not found", api.Singular(kind), id)
	case o != nil:
		return api.Errorf(api.ErrForbidden, "user %s lacks %s on %s %s", who.User, action, api.Singular(kind), o.GetMeta().Name)
	}
	return api.Errorf(api.ErrForbidden, "user %s lacks %s", who.User, action)
}

// CanRead says whether who may see o (System.Read): what lists show.
func (p *permissions) CanRead(who auth.Principal, o api.Object) bool {
	return p.rights(who, o).Has(authz.SystemRead)
}

// place is o as the rules see it, with its ancestors, nearest first: a VM
// under its folders (innermost first), then its host, cluster and
// datacenter; a folder under its parent folders and its datacenter; a
// task under its target.
func (p *permissions) place(o api.Object) (authz.Object, []authz.Object) {
	if o == nil {
		return authz.Root, nil
	}
	if t, ok := o.(*api.Task); ok {
		target, ok := p.cache.Get(t.Target.Kind, t.Target.ID)
		if !ok {
			return authz.Object{Kind: api.KindTask, ID: t.Metadata.ID}, nil
		}
		obj, anc := p.place(target)
		return authz.Object{Kind: api.KindTask, ID: t.Metadata.ID}, append([]authz.Object{obj}, anc...)
	}
	self := authz.Object{Kind: o.Kind(), ID: o.GetMeta().ID}
	var anc []authz.Object
	add := func(kind, id string) bool {
		if id == "" {
			return false
		}
		anc = append(anc, authz.Object{Kind: kind, ID: id})
		return true
	}
	cluster := func(id string) {
		if add(api.KindCluster, id) {
			if c, ok := p.cache.Get(api.KindCluster, id); ok {
				add(api.KindDatacenter, c.(*api.Cluster).Spec.Datacenter.ID)
			}
		}
	}
	folders := func(id string) {
		for i := 0; i <= api.MaxFolderDepth && add(api.KindFolder, id); i++ {
			f, ok := p.cache.Get(api.KindFolder, id)
			if !ok {
				return
			}
			id = f.(*api.Folder).Spec.Parent.ID
		}
	}
	switch v := o.(type) {
	case *api.VM:
		folders(v.Spec.Folder.ID)
		add(api.KindHost, v.Spec.Host.ID)
		cluster(v.Spec.Cluster.ID)
	case *api.Folder:
		folders(v.Spec.Parent.ID)
		add(api.KindDatacenter, v.Spec.Datacenter.ID)
	case *api.Host:
		cluster(v.Spec.Cluster.ID)
	case *api.Cluster:
		add(api.KindDatacenter, v.Spec.Datacenter.ID)
	case *api.Datastore:
		add(api.KindHost, v.Spec.Host.ID)
		add(api.KindDatacenter, v.Spec.Datacenter.ID)
	case *api.PortGroup:
		add(api.KindSwitch, v.Spec.Switch.ID)
		add(api.KindDatacenter, v.Spec.Datacenter.ID)
	case *api.Switch:
		add(api.KindDatacenter, v.Spec.Datacenter.ID)
	case *api.Image:
		add(api.KindDatastore, v.Spec.Datastore.ID)
		if ds, ok := p.cache.Get(api.KindDatastore, v.Spec.Datastore.ID); ok {
			add(api.KindDatacenter, ds.(*api.Datastore).Spec.Datacenter.ID)
		}
	}
	return self, anc
}

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
			if !unrestricted(who) && !a.self && !s.perms.holdsAnywhere(who, a.priv) {
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
	if unrestricted(who) {
		return objs
	}
	return slices.DeleteFunc(objs, func(o T) bool { return !s.perms.CanRead(who, o) })
}

// eventVisible says which events the request's caller may see: those of
// objects (and tasks) it may read; for others than the admin, not those
// of objects that are gone.
func (s *Server) eventVisible(r *http.Request) func(api.Event) bool {
	who, _ := auth.From(r.Context())
	if unrestricted(who) {
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
	if unrestricted(who) {
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

// unrestricted says whether who may do everything: the admin, with a
// token that no role narrows.
func unrestricted(who auth.Principal) bool { return who.User == api.AdminUser && who.Role == "" }

// holdsAnywhere says whether who holds priv on some object (its token's
// role allowing it).
func (p *permissions) holdsAnywhere(who auth.Principal, priv authz.Privilege) bool {
	pol := p.policy()
	if who.Role != "" && !pol.Narrow(authz.Everything(), who.Role).Has(priv) {
		return false
	}
	return pol.HoldsAnywhere(authz.Subject{User: who.User, Groups: who.Groups}, priv)
}
