// Package rights is the datacenter's Authorizer: authz's rules (pure)
// applied to the inventory as the cache holds it — an object's place in
// the tree (its ancestors), the stored roles and permissions (rebuilt into
// a policy when one changes), the admin's standing permission and a
// token's narrowing role.
package rights

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/store"
)

// Authorizer is the datacenter's auth.Authorizer: the roles and permissions
// in the cache, with the inventory's tree (see package authz). The policy
// is rebuilt when a role or permission changes, as the cache sees it: a
// removed permission stops working for every request after the change
// reached this server's cache (at once for requests that Sync).
type Authorizer struct {
	cache *store.Cache
	gen   atomic.Uint64 // role and permission changes seen

	mu    sync.Mutex
	built uint64
	pol   *authz.Policy
}

// New returns the authorizer over the cache c; call it before c starts
// (it observes role and permission changes).
func New(c *store.Cache) *Authorizer {
	p := &Authorizer{cache: c}
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

func (p *Authorizer) Policy() *authz.Policy {
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

// Rights are who's privileges on o (nil: the root), narrowed to its
// token's role if it has one.
func (p *Authorizer) Rights(who auth.Principal, o api.Object) authz.Rights {
	obj, anc := p.Place(o)
	pol := p.Policy()
	r := pol.Rights(authz.Subject{User: who.User, Groups: who.Groups}, obj, anc)
	if who.Role != "" {
		r = pol.Narrow(r, who.Role)
	}
	return r
}

// Authorize implements auth.Authorizer: action is a privilege, kind and
// id the object (empty: the root). A caller who may not even see the
// object is told it does not exist, so that names do not leak.
func (p *Authorizer) Authorize(_ context.Context, who auth.Principal, action, kind, id string) error {
	var o api.Object
	if kind != "" {
		var ok bool
		if o, ok = p.cache.Get(kind, id); !ok {
			return nil // the handler answers 404
		}
	}
	r := p.Rights(who, o)
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
func (p *Authorizer) CanRead(who auth.Principal, o api.Object) bool {
	return p.Rights(who, o).Has(authz.SystemRead)
}

// Place is o as the rules see it, with its ancestors, nearest first: a VM
// under its folders (innermost first), then its host, cluster and
// datacenter; a folder under its parent folders and its datacenter; a
// task under its target.
func (p *Authorizer) Place(o api.Object) (authz.Object, []authz.Object) {
	if o == nil {
		return authz.Root, nil
	}
	if t, ok := o.(*api.Task); ok {
		target, ok := p.cache.Get(t.Target.Kind, t.Target.ID)
		if !ok {
			return authz.Object{Kind: api.KindTask, ID: t.Metadata.ID}, nil
		}
		obj, anc := p.Place(target)
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

// Unrestricted says whether who may do everything: the admin, with a
// token that no role narrows.
func Unrestricted(who auth.Principal) bool { return who.User == api.AdminUser && who.Role == "" }

// HoldsAnywhere says whether who holds priv on some object (its token's
// role allowing it).
func (p *Authorizer) HoldsAnywhere(who auth.Principal, priv authz.Privilege) bool {
	pol := p.Policy()
	if who.Role != "" && !pol.Narrow(authz.Everything(), who.Role).Has(priv) {
		return false
	}
	return pol.HoldsAnywhere(authz.Subject{User: who.User, Groups: who.Groups}, priv)
}
