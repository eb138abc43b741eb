// Package auth is who a request acts as: the Authenticator that turns a
// bearer token into a Principal, the Authorizer that decides whether that
// principal may do an action on an object, and the principal carried in a
// request's context for the task records and audit trail that name it.
// The HTTP layer calls both; the control packages only read the context.
package auth

import "context"

// Principal is the user (or host) a request acts as.
type Principal struct {
	User string
	// Role, when set, narrows what the request may do to that role's
	// privileges (a token made with --role).
	Role string
	// Groups are the groups the user is a member of.
	Groups []string
	// Token is the ID of the token (or session) the request came with.
	Token string
}

// Authenticator checks a bearer secret.
type Authenticator interface {
	// Authenticate returns who holds secret, or an api.ErrUnauthorized
	// error.
	Authenticate(ctx context.Context, secret string) (Principal, error)
}

// Authorizer decides whether a principal may act.
type Authorizer interface {
	// Authorize returns nil when p may do action (an operation name:
	// "vm.create", "host.maintenance.enter") on the object of kind with
	// this ID (empty for a collection), or an api.ErrForbidden error.
	Authorize(ctx context.Context, p Principal, action, kind, id string) error
}

// AllowAll is the authorizer of a datacenter without roles: every
// authenticated principal may do everything (every token is an admin's).
type AllowAll struct{}

// Authorize allows.
func (AllowAll) Authorize(context.Context, Principal, string, string, string) error { return nil }

type principalKey struct{}

// With returns ctx carrying p.
func With(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// From returns the principal ctx carries.
func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// User names who ctx acts for: the principal's user, or "system" for the
// server's own work (controllers, HA).
func User(ctx context.Context) string {
	if p, ok := From(ctx); ok && p.User != "" {
		return p.User
	}
	return "system"
}
