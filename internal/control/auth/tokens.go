package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// API tokens: what users send as "Authorization: Bearer". Only the hash
// of each secret is stored, under tokenPrefix; a token's ID is the start
// of that hash, enough to name it and useless to guess the secret from.
// Deleting a token works at once: the server that deletes it forgets it
// before answering, the others within their watch's delay (see
// Tokens). A deleted token's hash is kept under revokedPrefix so
// that a restarted server does not register its admin token again from
// <data>/admin-token once it has been deleted (it makes a new one).

// Hash is what is stored of a secret.
func Hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

type record struct {
	User        string    `json:"user"`
	Role        string    `json:"role"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Expires, when set, ends the token; a session's moves on while it is
	// used (SessionIdle), up to MaxExpires.
	Expires    time.Time `json:"expires,omitzero"`
	MaxExpires time.Time `json:"maxExpires,omitzero"`
	Session    bool      `json:"session,omitempty"`
}

// Sessions end after SessionIdle without a request, and SessionMax after
// the login in any case.
const (
	SessionIdle = 30 * time.Minute
	SessionMax  = 12 * time.Hour
	// refreshAfter is how stale a session's expiry may get before a
	// request moves it on (a write at most this often per session).
	refreshAfter = time.Minute
)

// Tokens checks bearer tokens (it is the datacenter's Authenticator), remembering good ones so that not
// every request reads etcd. A watch on the tokens drops what it remembers
// of a token the moment its record changes or goes: a deleted token stops
// working at once. While the watch is not running nothing is remembered.
type Tokens struct {
	st  *store.Store
	cli *clientv3.Client

	mu   sync.Mutex
	seen map[string]authEntry
	// gen counts token changes and watch restarts: a check that read etcd
	// before one of them must not remember what it read.
	gen      uint64
	watching bool
}

type authEntry struct {
	tok   record
	until time.Time
}

// authCacheFor bounds how long a token is remembered even with the watch
// running (a second line of defence, should an event ever be missed).
const authCacheFor = 5 * time.Minute

// NewTokens returns the token store over st.
func NewTokens(st *store.Store) *Tokens {
	return &Tokens{st: st, cli: st.Client(), seen: map[string]authEntry{}}
}

// Watch keeps the remembered tokens true to etcd until ctx ends.
func (a *Tokens) Watch(ctx context.Context, log *slog.Logger) {
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		wch := a.cli.Watch(clientv3.WithRequireLeader(ctx), tokenPrefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				log.Warn("token watch failed; checking every token against etcd until it is back", "err", err)
				break
			}
			if resp.Created {
				a.setWatching(true)
				wait = 100 * time.Millisecond
				continue
			}
			a.mu.Lock()
			for _, ev := range resp.Events {
				delete(a.seen, strings.TrimPrefix(string(ev.Kv.Key), tokenPrefix))
			}
			a.gen++
			a.mu.Unlock()
		}
		a.setWatching(false)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// setWatching forgets every token when the watch starts or stops: events
// may have been missed in between.
func (a *Tokens) setWatching(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.watching = on
	a.seen = map[string]authEntry{}
	a.gen++
}

// forget drops what is remembered of a token (its hash) at once, on the
// server that deleted it; the watch does the same on every server.
func (a *Tokens) forget(h string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.seen, h)
	a.gen++
}

// Create stores a token with this secret for user.
func (a *Tokens) Create(ctx context.Context, secret, user, role string) error {
	b, _ := json.Marshal(record{User: user, Role: role, Created: time.Now().UTC()})
	if _, err := a.cli.Put(ctx, tokenPrefix+Hash(secret), string(b)); err != nil {
		return fmt.Errorf("store token for %s: %w", user, err)
	}
	return nil
}

// Exists says whether a token with this secret is stored.
func (a *Tokens) Exists(ctx context.Context, secret string) (bool, error) {
	resp, err := a.cli.Get(ctx, tokenPrefix+Hash(secret), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("check token: %w", err)
	}
	return resp.Count > 0, nil
}

func (a *Tokens) check(ctx context.Context, secret string) (record, error) {
	h := Hash(secret)
	now := time.Now()
	a.mu.Lock()
	e, ok := a.seen[h]
	gen := a.gen
	a.mu.Unlock()
	if ok && now.Before(e.until) {
		return a.live(ctx, h, e.tok, now)
	}
	resp, err := a.cli.Get(ctx, tokenPrefix+h)
	if err != nil {
		return record{}, fmt.Errorf("check token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return record{}, api.Errorf(api.ErrUnauthorized, "invalid token")
	}
	var t record
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return record{}, fmt.Errorf("read token: %w", err)
	}
	a.mu.Lock()
	if a.watching && a.gen == gen {
		a.seen[h] = authEntry{tok: t, until: now.Add(authCacheFor)}
	}
	a.mu.Unlock()
	return a.live(ctx, h, t, now)
}

// live refuses an expired token and moves a session's expiry on.
func (a *Tokens) live(ctx context.Context, h string, t record, now time.Time) (record, error) {
	if !t.Expires.IsZero() && !now.Before(t.Expires) {
		return record{}, api.Errorf(api.ErrUnauthorized, "token expired at %s", t.Expires.Format(time.RFC3339))
	}
	if t.Session && t.Expires.Before(t.MaxExpires) && t.Expires.Sub(now) < SessionIdle-refreshAfter {
		t.Expires = minTime(now.Add(SessionIdle), t.MaxExpires)
		b, _ := json.Marshal(t)
		// Best effort: a session whose refresh is lost ends at its old
		// expiry. The watch makes every server read the new record.
		if _, err := a.cli.Put(ctx, tokenPrefix+h, string(b)); err == nil {
			a.forget(h)
		}
	}
	return t, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Authenticate checks a bearer secret (Authenticator).
func (a *Tokens) Authenticate(ctx context.Context, secret string) (Principal, error) {
	tok, err := a.check(ctx, secret)
	if err != nil {
		return Principal{}, err
	}
	return Principal{User: tok.User, Role: narrowing(tok.Role), Token: tokenID(Hash(secret))}, nil
}

// narrowing is the role a token is narrowed to: tokens made before roles
// existed say "admin", which narrows nothing.
func narrowing(role string) string {
	if role == "admin" {
		return ""
	}
	return role
}

const (
	tokenPrefix       = store.SysPrefix + "tokens/"
	revokedPrefix     = store.SysPrefix + "tokens-revoked/"
	tokenIDLen        = 16
	tokenSecretPrefix = "vdct."
)

var _ Authenticator = (*Tokens)(nil)

func tokenID(hash string) string { return hash[:tokenIDLen] }

func tokenView(hash string, t record) api.Token {
	return api.Token{ID: tokenID(hash), User: t.User, Description: t.Description, Created: t.Created, Expires: t.Expires, Session: t.Session,
		Role: narrowing(t.Role)}
}

// NewSecret is a fresh random secret for a token.
func NewSecret() string {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}

// Mint makes a new API token for user, valid until expires (zero:
// until deleted): it adds the token's record to txn (failing the commit
// if the secret was ever taken) and returns the token with its secret,
// to show once the caller's commit succeeded. The token acts as the user,
// with the user's permissions.
func (a *Tokens) Mint(txn *store.Txn, user, description string, expires time.Time, role string) api.Token {
	return a.mint(txn, record{User: user, Description: description, Created: time.Now().UTC(), Expires: expires, Role: role})
}

// MintSession makes a login session's token for user.
func (a *Tokens) MintSession(txn *store.Txn, user string) api.Session {
	now := time.Now().UTC()
	t := a.mint(txn, record{User: user, Description: "login session", Created: now, Session: true,
		Expires: now.Add(SessionIdle), MaxExpires: now.Add(SessionMax)})
	return api.Session{ID: t.ID, User: user, Token: t.Token, Created: now, Expires: t.Expires, MaxExpires: now.Add(SessionMax)}
}

func (a *Tokens) mint(txn *store.Txn, t record) api.Token {
	secret := tokenSecretPrefix + NewSecret()
	h := Hash(secret)
	b, _ := json.Marshal(t)
	txn.Claim(tokenPrefix+h, string(b), api.Errorf(api.ErrConflict, "a token with this secret exists (retry)"))
	out := tokenView(h, t)
	out.Token = secret
	return out
}

// List returns the tokens, oldest first, without their secrets.
func (a *Tokens) List(ctx context.Context) (api.List[api.Token], error) {
	resp, err := a.cli.Get(ctx, tokenPrefix, clientv3.WithPrefix())
	if err != nil {
		return api.List[api.Token]{}, fmt.Errorf("list tokens: %w", err)
	}
	items := []api.Token{}
	for _, kv := range resp.Kvs {
		var t record
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			continue
		}
		items = append(items, tokenView(strings.TrimPrefix(string(kv.Key), tokenPrefix), t))
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Created.Before(items[j].Created) })
	return api.List[api.Token]{Items: items, Revision: resp.Header.Revision}, nil
}

// Delete removes the token with this ID, recording its revocation: this
// server stops accepting it before Delete returns, the others when their
// watch sees the delete.
func (a *Tokens) Delete(ctx context.Context, id string) (api.Token, error) {
	if _, err := hex.DecodeString(id); err != nil || len(id) != tokenIDLen || strings.ToLower(id) != id {
		return api.Token{}, api.Errorf(api.ErrInvalid, "a token ID is %d lower-case hex digits (see vdc token ls), got %q", tokenIDLen, id)
	}
	resp, err := a.cli.Get(ctx, tokenPrefix+id, clientv3.WithPrefix())
	if err != nil {
		return api.Token{}, fmt.Errorf("delete token %s: %w", id, err)
	}
	if len(resp.Kvs) != 1 {
		return api.Token{}, api.Errorf(api.ErrNotFound, "token %s not found", id)
	}
	kv := resp.Kvs[0]
	h := strings.TrimPrefix(string(kv.Key), tokenPrefix)
	var t record
	_ = json.Unmarshal(kv.Value, &t)
	rb, _ := json.Marshal(map[string]any{"revoked": time.Now().UTC(), "by": User(ctx), "user": t.User})
	txn := a.st.Txn().
		If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision), api.Errorf(api.ErrConflict, "token %s changed meanwhile; retry", id)).
		DeleteRaw(string(kv.Key)).
		PutRaw(revokedPrefix+h, string(rb))
	if _, err := txn.Commit(ctx); err != nil {
		return api.Token{}, fmt.Errorf("delete token %s: %w", id, err)
	}
	a.forget(h)
	return tokenView(h, t), nil
}

// DeleteUser removes every token and session of user (its password
// changed, or it went): they stop working on this server at once, on the
// others when their watch sees the deletes.
func (a *Tokens) DeleteUser(ctx context.Context, user string) (int, error) {
	l, err := a.List(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, t := range l.Items {
		if t.User != user {
			continue
		}
		if _, err := a.Delete(ctx, t.ID); err != nil && !errors.Is(err, api.ErrNotFound) {
			return n, fmt.Errorf("end the tokens of user %s: %w", user, err)
		}
		n++
	}
	return n, nil
}

// Revoked says whether a token (its secret) was deleted.
func (a *Tokens) Revoked(ctx context.Context, secret string) (bool, error) {
	resp, err := a.cli.Get(ctx, revokedPrefix+Hash(secret), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("check token revocation: %w", err)
	}
	return resp.Count > 0, nil
}
