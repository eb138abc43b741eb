package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// users authenticates bearer tokens (auth.Tokens) as the users the
// datacenter knows: a disabled user's tokens and sessions stop working
// at once, and the principal carries the user's groups.
type users struct {
	tokens *auth.Tokens
	cache  *store.Cache
}

func (u users) Authenticate(ctx context.Context, secret string) (auth.Principal, error) {
	p, err := u.tokens.Authenticate(ctx, secret)
	if err != nil {
		return p, err
	}
	if o, ok := u.cache.Lookup(api.KindUser, p.User); ok && o.(*api.User).Spec.Disabled {
		return auth.Principal{}, api.Errorf(api.ErrUnauthorized, "user %s is disabled", p.User)
	}
	for _, g := range u.cache.List(api.KindGroup) {
		if slices.Contains(g.(*api.Group).Spec.Members, p.User) {
			p.Groups = append(p.Groups, g.GetMeta().Name)
		}
	}
	return p, nil
}

// POST /api/v1/users
func (s *Server) createUser(w http.ResponseWriter, r *http.Request) error {
	var req api.UserCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := inventory.ValidateCommon("user", req.Name, nil, req.Description); err != nil {
		return err
	}
	if req.Name == api.AdminUser {
		return api.Errorf(api.ErrConflict, "user %s is the built-in administrator (its token is in the server's data directory)", api.AdminUser)
	}
	if err := inventory.FirstErr(api.ValidateText("full name", req.FullName), auth.ValidatePassword(req.Name, req.Password)); err != nil {
		return err
	}
	u := &api.User{Metadata: api.ObjectMeta{Name: req.Name, ID: store.NewID()}, Spec: api.UserSpec{FullName: req.FullName, Description: req.Description}}
	t := tasks.New(r.Context(), tasks.OpName(api.KindUser, "create"), u, nil)
	txn := s.store.Txn().Create(u).PutRaw(auth.PasswordKey(u.Metadata.ID), auth.HashPassword(req.Password))
	tasks.Done(t, u)
	return s.commitInline(w, r, txn, t)
}

// PATCH /api/v1/users/{name}: Authorization.ModifyUsers, except for a
// user changing its own password.
func (s *Server) updateUser(w http.ResponseWriter, r *http.Request) error {
	var req api.UserUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	who, _ := auth.From(r.Context())
	own := who.User == r.PathValue("name") && req.FullName == nil && req.Description == nil && req.Disabled == nil
	if !own {
		if err := s.authz.Authorize(r.Context(), who, string(authz.ModifyUsers), "", ""); err != nil {
			return err
		}
	}
	o, err := s.inv.Lookup(api.KindUser, r.PathValue("name"))
	if err != nil {
		return err
	}
	if req.Password != nil {
		if err := auth.ValidatePassword(o.GetMeta().Name, *req.Password); err != nil {
			return err
		}
	}
	err = s.update(w, r, api.KindUser, func(o api.Object) error {
		u := o.(*api.User)
		if req.FullName != nil {
			if err := api.ValidateText("full name", *req.FullName); err != nil {
				return err
			}
			u.Spec.FullName = *req.FullName
		}
		if req.Description != nil {
			if err := inventory.ValidateDescription(*req.Description); err != nil {
				return err
			}
			u.Spec.Description = *req.Description
		}
		if req.Disabled != nil {
			u.Spec.Disabled = *req.Disabled
		}
		return nil
	})
	if err != nil || req.Password == nil {
		return err
	}
	// The answer is written; the new password, and the end of the user's
	// sessions and tokens (the caller's own too), before it is sent.
	return s.setPassword(r, o, *req.Password)
}

// setPassword stores user u's new password and ends its sessions and
// tokens.
func (s *Server) setPassword(r *http.Request, u api.Object, password string) error {
	ctx, name := context.WithoutCancel(r.Context()), u.GetMeta().Name
	if _, err := s.store.Txn().PutRaw(auth.PasswordKey(u.GetMeta().ID), auth.HashPassword(password)).Commit(ctx); err != nil {
		return fmt.Errorf("set the password of user %s: %w", name, err)
	}
	n, err := s.auth.DeleteUser(ctx, name)
	if err != nil {
		return err
	}
	s.log.Info("password changed; the user's sessions and tokens end", "user", name, "ended", n, "by", auth.User(ctx))
	return nil
}

// DELETE /api/v1/users/{name}: the user, its password and its tokens.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	o, err := s.inv.Lookup(api.KindUser, r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.remove(w, r, api.KindUser); err != nil {
		return err
	}
	ctx := context.WithoutCancel(r.Context())
	_, _ = s.store.Txn().DeleteRaw(auth.PasswordKey(o.GetMeta().ID)).Commit(ctx)
	if _, err := s.auth.DeleteUser(ctx, o.GetMeta().Name); err != nil {
		s.log.Warn("user deleted, but not all of its tokens", "user", o.GetMeta().Name, "err", err)
	}
	return nil
}

// POST /api/v1/groups
func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req api.GroupCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := inventory.ValidateCommon("group", req.Name, nil, req.Description); err != nil {
		return err
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	members, err := s.members(nil, req.Members, nil)
	if err != nil {
		return err
	}
	return s.createInline(w, r, &api.Group{Metadata: api.ObjectMeta{Name: req.Name}, Spec: api.GroupSpec{Members: members, Description: req.Description}})
}

// members is a group's members after adding add and removing remove:
// sorted, each a user that exists.
func (s *Server) members(have, add, remove []string) ([]string, error) {
	out := slices.Clone(have)
	for _, m := range add {
		if _, ok := s.cache.Lookup(api.KindUser, m); !ok {
			return nil, api.Errorf(api.ErrNotFound, "user %q not found", m)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	for _, m := range remove {
		i := slices.Index(out, m)
		if i < 0 {
			return nil, api.Errorf(api.ErrNotFound, "user %q is not a member", m)
		}
		out = slices.Delete(out, i, i+1)
	}
	slices.Sort(out)
	return nonNil(out), nil
}

// PATCH /api/v1/groups/{name}
func (s *Server) updateGroup(w http.ResponseWriter, r *http.Request) error {
	var req api.GroupUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	return s.update(w, r, api.KindGroup, func(o api.Object) error {
		g := o.(*api.Group)
		m, err := s.members(g.Spec.Members, req.Add, req.Remove)
		if err != nil {
			return err
		}
		g.Spec.Members = m
		if req.Description != nil {
			if err := inventory.ValidateDescription(*req.Description); err != nil {
				return err
			}
			g.Spec.Description = *req.Description
		}
		return nil
	})
}

// DELETE /api/v1/groups/{name}: not while a permission names it.
func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	name := r.PathValue("name")
	var used []string
	for _, o := range s.cache.List(api.KindPermission) {
		if p := o.(*api.Permission); p.Spec.Group && p.Spec.Principal == name {
			used = append(used, p.Metadata.Name)
		}
	}
	if len(used) > 0 {
		slices.Sort(used)
		return api.Errorf(api.ErrConflict, "group %s is named by permissions %s: remove them first", name, strings.Join(used, ", "))
	}
	return s.remove(w, r, api.KindGroup)
}

// POST /api/v1/sessions: a login. Wrong users and wrong passwords get
// the same answer, after the same work; repeated failures of a user or
// from an address are slowed down (auth.Logins).
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req api.LoginRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	addr, _, _ := net.SplitHostPort(r.RemoteAddr)
	audit.SetUser(r.Context(), req.User)
	if wait, ok := s.logins.Allow(req.User, addr); !ok {
		s.log.Warn("login refused: too many failures", "user", req.User, "from", addr)
		return api.Errorf(api.ErrTooManyRequests, "too many failed logins of user %q or from %s: try again in %s", req.User, addr, wait.Round(1e9))
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	var stored string
	o, ok := s.cache.Lookup(api.KindUser, req.User)
	if ok && o.GetMeta().Name == req.User {
		var err error
		if stored, err = auth.ReadPassword(r.Context(), s.store, o.GetMeta().ID); err != nil {
			return err
		}
	}
	good := auth.CheckPassword(stored, req.Password) // also without a user: the same work
	if !good || o.(*api.User).Spec.Disabled {        // good only if o is a user
		s.logins.Failed(req.User, addr)
		s.log.Warn("failed login", "user", req.User, "from", addr)
		return api.Errorf(api.ErrUnauthorized, "wrong user or password")
	}
	txn := s.store.Txn()
	sess := s.auth.MintSession(txn, req.User)
	s.log.Info("logged in", "user", req.User, "from", addr, "session", sess.ID)
	return s.idem.CommitResponse(w, r.Context(), txn, http.StatusCreated, sess, "log in "+req.User)
}

// GET /api/v1/sessions: the caller's own sessions.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	who, _ := auth.From(r.Context())
	list, err := s.auth.List(r.Context())
	if err != nil {
		return err
	}
	var items []api.Token
	for _, t := range list.Items {
		if t.Session && t.User == who.User {
			items = append(items, t)
		}
	}
	reply(w, http.StatusOK, api.List[api.Token]{Items: nonNil(items), Revision: list.Revision})
	return nil
}

// DELETE /api/v1/sessions/{id}: a session of the caller's, or anyone's
// with Sessions.TerminateSession.
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	who, _ := auth.From(r.Context())
	id := r.PathValue("id")
	list, err := s.auth.List(r.Context())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(list.Items, func(t api.Token) bool { return t.ID == id && t.Session })
	if i < 0 || list.Items[i].User != who.User {
		if err := s.authz.Authorize(r.Context(), who, string(authz.ManageSessions), "", ""); err != nil {
			return api.Errorf(api.ErrNotFound, "session %s not found", id)
		}
	}
	if i < 0 {
		return api.Errorf(api.ErrNotFound, "session %s not found", id)
	}
	tok, err := s.auth.Delete(r.Context(), id)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, tok)
	return nil
}
