package server

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/rights"
)

// permissionKinds are the kinds of objects permissions go on (besides
// the root).
var permissionKinds = []string{api.KindDatacenter, api.KindFolder, api.KindCluster, api.KindHost, api.KindDatastore, api.KindPortGroup,
	api.KindSwitch, api.KindVM, api.KindImage}

// GET /api/v1/roles: the built-in roles, then the stored ones.
func (s *Server) listRoles(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	var items []api.Object
	for _, b := range authz.BuiltIn {
		items = append(items, builtInRole(b))
	}
	stored := s.cache.List(api.KindRole)
	inventory.SortByName(stored)
	items = append(items, stored...)
	reply(w, http.StatusOK, api.List[api.Object]{Items: items, Revision: s.cache.Rev()})
	return nil
}

func builtInRole(b authz.Role) *api.Role {
	ps := make([]string, len(b.Privileges))
	for i, p := range b.Privileges {
		ps[i] = string(p)
	}
	return &api.Role{Metadata: api.ObjectMeta{Name: b.Name, ID: b.Name}, Spec: api.RoleSpec{Privileges: ps, BuiltIn: true}}
}

// role finds a role, built-in or stored, by name.
func (s *Server) role(name string) (*api.Role, error) {
	if b, ok := authz.BuiltInRole(name); ok {
		return builtInRole(b), nil
	}
	o, err := s.inv.Lookup(api.KindRole, name)
	if err != nil {
		return nil, err
	}
	return o.(*api.Role), nil
}

// GET /api/v1/roles/{name}
func (s *Server) getRole(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	ro, err := s.role(r.PathValue("name"))
	if err != nil {
		return err
	}
	replyObject(w, ro)
	return nil
}

// POST /api/v1/roles
func (s *Server) createRole(w http.ResponseWriter, r *http.Request) error {
	var req api.RoleCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := inventory.ValidateCommon("role", req.Name, nil, req.Description); err != nil {
		return err
	}
	if _, ok := authz.BuiltInRole(req.Name); ok {
		return api.Errorf(api.ErrConflict, "role %s is built in", req.Name)
	}
	if len(req.Privileges) == 0 {
		return api.Errorf(api.ErrInvalid, "role %s: give its privileges (NoAccess is the role without any)", req.Name)
	}
	ps := slices.Clone(req.Privileges)
	for _, p := range ps {
		if !authz.Known(authz.Privilege(p)) {
			return api.Errorf(api.ErrInvalid, "role %s: no privilege %q (vdc role privileges lists them)", req.Name, p)
		}
	}
	slices.Sort(ps)
	return s.createInline(w, r, &api.Role{Metadata: api.ObjectMeta{Name: req.Name},
		Spec: api.RoleSpec{Privileges: slices.Compact(ps), Description: req.Description}})
}

// DELETE /api/v1/roles/{name}: not a built-in role, nor one a permission
// uses.
func (s *Server) deleteRole(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	name := r.PathValue("name")
	if _, ok := authz.BuiltInRole(name); ok {
		return api.Errorf(api.ErrConflict, "role %s is built in and cannot be deleted", name)
	}
	ro, err := s.inv.Lookup(api.KindRole, name)
	if err != nil {
		return err
	}
	var users []string
	for _, o := range s.cache.List(api.KindPermission) {
		if p := o.(*api.Permission); p.Spec.Role == ro.GetMeta().Name {
			users = append(users, p.Metadata.Name)
		}
	}
	if len(users) > 0 {
		slices.Sort(users)
		return api.Errorf(api.ErrConflict, "role %s is in use by permissions %s: remove them first", name, strings.Join(users, ", "))
	}
	return s.remove(w, r, api.KindRole)
}

// GET /api/v1/permissions: those on objects the caller may see.
func (s *Server) listPermissions(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	who, _ := auth.From(r.Context())
	var items []api.Object
	for _, o := range s.cache.List(api.KindPermission) {
		p := o.(*api.Permission)
		if rights.Unrestricted(who) || s.permissionVisible(who, p) {
			items = append(items, p)
		}
	}
	inventory.SortByName(items)
	reply(w, http.StatusOK, api.List[api.Object]{Items: nonNil(items), Revision: s.cache.Rev()})
	return nil
}

func (s *Server) permissionVisible(who auth.Principal, p *api.Permission) bool {
	if p.Spec.Object.Kind == authz.Root.Kind {
		return s.perms.CanRead(who, nil)
	}
	o, ok := s.cache.Get(p.Spec.Object.Kind, p.Spec.Object.ID)
	return ok && s.perms.CanRead(who, o)
}

// POST /api/v1/permissions: the caller needs
// Authorization.ModifyPermissions on the object.
func (s *Server) createPermission(w http.ResponseWriter, r *http.Request) error {
	var req api.PermissionCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	what := "user"
	if req.Group {
		what = "group"
	}
	if err := api.ValidateName(what, req.Principal); err != nil {
		return err
	}
	ro, err := s.role(req.Role)
	if err != nil {
		return err
	}
	ref, err := s.permissionObject(req.Object)
	if err != nil {
		return err
	}
	if err := s.authorizeOn(r, authz.ModifyPermissions, ref); err != nil {
		return err
	}
	if !req.Group && req.Principal == api.AdminUser {
		return api.Errorf(api.ErrConflict, "user %s holds Administrator on everything, always", api.AdminUser)
	}
	sum := sha256.Sum256([]byte(what + "\x00" + req.Principal + "\x00" + ref.Kind + "\x00" + ref.ID))
	name := "p-" + hex.EncodeToString(sum[:6])
	if _, ok := s.cache.Lookup(api.KindPermission, name); ok {
		return api.Errorf(api.ErrConflict, "%s %s already has a permission on %s %s: remove it first", what, req.Principal, ref.Kind, ref.Name)
	}
	return s.createInline(w, r, &api.Permission{Metadata: api.ObjectMeta{Name: name},
		Spec: api.PermissionSpec{Principal: req.Principal, Group: req.Group, Role: ro.Metadata.Name, Object: ref, Propagate: req.Propagate}})
}

// permissionObject resolves "root" or KIND:NAME; a folder's NAME may be
// its path (folders:/web/prod), and it is named by its path.
func (s *Server) permissionObject(spec string) (api.ObjectRef, error) {
	if spec == authz.Root.Kind {
		return api.ObjectRef{Kind: authz.Root.Kind}, nil
	}
	kind, name, ok := strings.Cut(spec, ":")
	if !ok || !slices.Contains(permissionKinds, kind) {
		return api.ObjectRef{}, api.Errorf(api.ErrInvalid, "object %q: give root or KIND:NAME with KIND one of %s", spec, strings.Join(permissionKinds, ", "))
	}
	o, err := s.inv.Lookup(kind, name)
	if err != nil {
		return api.ObjectRef{}, err
	}
	ref := api.ObjectRef{Kind: kind, ID: o.GetMeta().ID, Name: o.GetMeta().Name}
	if kind == api.KindFolder {
		ref.Name = inventory.FolderPath(s.st, ref.ID)
	}
	return ref, nil
}

// DELETE /api/v1/permissions/{name}: the caller needs
// Authorization.ModifyPermissions on its object.
func (s *Server) deletePermission(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	o, err := s.inv.Lookup(api.KindPermission, r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.authorizeOn(r, authz.ModifyPermissions, o.(*api.Permission).Spec.Object); err != nil {
		return err
	}
	return s.remove(w, r, api.KindPermission)
}

// authorizeOn checks that the request's caller holds priv on ref.
func (s *Server) authorizeOn(r *http.Request, priv authz.Privilege, ref api.ObjectRef) error {
	who, _ := auth.From(r.Context())
	kind := ref.Kind
	if kind == authz.Root.Kind {
		kind = ""
	}
	return s.authz.Authorize(r.Context(), who, string(priv), kind, ref.ID)
}
