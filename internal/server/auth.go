package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/store"
)

const (
	tokenPrefix     = store.SysPrefix + "tokens/"
	joinTokenPrefix = store.SysPrefix + "jointokens/"
)

// Only hashes of secrets are stored.
func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

type userToken struct {
	User        string    `json:"user"`
	Role        string    `json:"role"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
}

// authenticator checks bearer tokens, remembering good ones so that not
// every request reads etcd. A watch on the tokens drops what it remembers
// of a token the moment its record changes or goes: a deleted token stops
// working at once. While the watch is not running nothing is remembered.
type authenticator struct {
	cli *clientv3.Client

	mu   sync.Mutex
	seen map[string]authEntry
	// gen counts token changes and watch restarts: a check that read etcd
	// before one of them must not remember what it read.
	gen      uint64
	watching bool
}

type authEntry struct {
	tok   userToken
	until time.Time
}

// authCacheFor bounds how long a token is remembered even with the watch
// running (a second line of defence, should an event ever be missed).
const authCacheFor = 5 * time.Minute

func newAuthenticator(cli *clientv3.Client) *authenticator {
	return &authenticator{cli: cli, seen: map[string]authEntry{}}
}

// watch keeps the remembered tokens true to etcd until ctx ends.
func (a *authenticator) watch(ctx context.Context, log *slog.Logger) {
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
func (a *authenticator) setWatching(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.watching = on
	a.seen = map[string]authEntry{}
	a.gen++
}

// forget drops what is remembered of a token (its hash) at once, on the
// server that deleted it; the watch does the same on every server.
func (a *authenticator) forget(h string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.seen, h)
	a.gen++
}

func (a *authenticator) create(ctx context.Context, secret, user, role string) error {
	b, _ := json.Marshal(userToken{User: user, Role: role, Created: time.Now().UTC()})
	if _, err := a.cli.Put(ctx, tokenPrefix+hashSecret(secret), string(b)); err != nil {
		return fmt.Errorf("store token for %s: %w", user, err)
	}
	return nil
}

func (a *authenticator) exists(ctx context.Context, secret string) (bool, error) {
	resp, err := a.cli.Get(ctx, tokenPrefix+hashSecret(secret), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("check token: %w", err)
	}
	return resp.Count > 0, nil
}

func (a *authenticator) check(ctx context.Context, secret string) (userToken, error) {
	h := hashSecret(secret)
	now := time.Now()
	a.mu.Lock()
	e, ok := a.seen[h]
	gen := a.gen
	a.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.tok, nil
	}
	resp, err := a.cli.Get(ctx, tokenPrefix+h)
	if err != nil {
		return userToken{}, fmt.Errorf("check token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return userToken{}, api.Errorf(api.ErrUnauthorized, "invalid token")
	}
	var t userToken
	if err := json.Unmarshal(resp.Kvs[0].Value, &t); err != nil {
		return userToken{}, fmt.Errorf("read token: %w", err)
	}
	a.mu.Lock()
	if a.watching && a.gen == gen {
		a.seen[h] = authEntry{tok: t, until: now.Add(authCacheFor)}
	}
	a.mu.Unlock()
	return t, nil
}

// Authenticate is the authenticator's side of auth.Authenticator.
func (a *authenticator) Authenticate(ctx context.Context, secret string) (auth.Principal, error) {
	tok, err := a.check(ctx, secret)
	if err != nil {
		return auth.Principal{}, err
	}
	return auth.Principal{User: tok.User, Role: tok.Role}, nil
}

// requireToken lets through only requests with a valid bearer token.
func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vdc"`)
			w.Header().Set("Connection", "close") // nothing more to do here
			fail(w, api.Errorf(api.ErrUnauthorized, "missing bearer token: send Authorization: Bearer <token> (the CLI reads it from its config)"))
			return
		}
		p, err := s.authn.Authenticate(r.Context(), secret)
		if err == nil {
			err = s.authz.Authorize(r.Context(), p, r.Method+" "+r.Pattern, "", "")
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vdc", error="invalid_token"`)
			if errors.Is(err, api.ErrUnauthorized) {
				w.Header().Set("Connection", "close")
			}
			fail(w, err)
			return
		}
		// An authenticated client's connections do not count against the
		// per-address limit.
		netguard.Trust(r.Context())
		next.ServeHTTP(w, r.WithContext(auth.With(r.Context(), p)))
	})
}

type joinTokenRecord struct {
	Uses    int       `json:"uses"`
	Expires time.Time `json:"expires"`
	Cluster string    `json:"cluster"` // ID
	// Host, when set, is the only host (ID) the token joins as: it was
	// made by `vdc host replace`, whose revocation time is Replaced. A
	// later replace, or the join, makes it stale.
	Host     string    `json:"host,omitempty"`
	Replaced time.Time `json:"replaced,omitzero"`
}

// errBadJoinToken is the one answer to every join token that is not good,
// whatever name it comes with, so that a caller without a good token
// learns nothing about the inventory.
func errBadJoinToken() error {
	return api.Errorf(api.ErrUnauthorized, "invalid join token: malformed, unknown, expired or used up; create a new one with `vdc host token create`")
}

// POST /api/v1/join-tokens
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) {
	var req api.JoinTokenRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Uses == 0 {
		req.Uses = 1
	}
	if req.TTLSeconds == 0 {
		req.TTLSeconds = 24 * 3600
	}
	if req.Uses < 1 || req.Uses > 100000 {
		fail(w, api.Errorf(api.ErrInvalid, "uses must be between 1 and 100000, got %d", req.Uses))
		return
	}
	if req.TTLSeconds < 1 || req.TTLSeconds > 365*24*3600 {
		fail(w, api.Errorf(api.ErrInvalid, "ttlSeconds must be between 1 and one year, got %d", req.TTLSeconds))
		return
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	cl, err := s.inv.PickCluster(req.Cluster)
	if err != nil {
		fail(w, err)
		return
	}
	rec := joinTokenRecord{Uses: req.Uses, Expires: time.Now().UTC().Add(time.Duration(req.TTLSeconds) * time.Second), Cluster: cl.Metadata.ID}
	txn := s.store.Txn()
	tok, err := s.addJoinToken(r.Context(), txn, rec)
	if err != nil {
		fail(w, fmt.Errorf("store join token: %w", err))
		return
	}
	s.commitResponse(w, r.Context(), txn, http.StatusCreated, api.JoinToken{Token: tok, Uses: rec.Uses, Expires: rec.Expires,
		Cluster: api.Ref{ID: cl.Metadata.ID, Name: cl.Metadata.Name}}, "store join token")
}

// addJoinToken adds a new join token to txn and returns it as the host
// presents it (vdc1.<secret>.<CA fingerprint>). Only its hash is stored,
// under a lease so that etcd forgets it when it expires.
func (s *Server) addJoinToken(ctx context.Context, txn *store.Txn, rec joinTokenRecord) (string, error) {
	ttl := int64(math.Ceil(time.Until(rec.Expires).Seconds()))
	lease, err := s.cli.Grant(ctx, max(ttl, 1))
	if err != nil {
		return "", fmt.Errorf("make a lease for a join token: %w", err)
	}
	secret := randomSecret()
	b, _ := json.Marshal(rec)
	txn.PutRaw(joinTokenPrefix+hashSecret(secret), string(b), clientv3.WithLease(lease.ID))
	return "vdc1." + secret + "." + s.ca.Fingerprint(), nil
}

// joinToken is a good join token as read, at its etcd revision.
type joinToken struct {
	key string
	rev int64
	rec joinTokenRecord
}

// readJoinToken checks a join token without spending it. Every way of
// being bad gets the same error.
func (s *Server) readJoinToken(ctx context.Context, tok string) (*joinToken, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "vdc1" || parts[1] == "" || parts[2] != s.ca.Fingerprint() {
		return nil, errBadJoinToken()
	}
	key := joinTokenPrefix + hashSecret(parts[1])
	resp, err := s.cli.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read join token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errBadJoinToken()
	}
	jt := &joinToken{key: key, rev: resp.Kvs[0].ModRevision}
	if err := json.Unmarshal(resp.Kvs[0].Value, &jt.rec); err != nil {
		return nil, fmt.Errorf("read join token: %w", err)
	}
	if time.Now().After(jt.rec.Expires) || jt.rec.Uses < 1 {
		return nil, errBadJoinToken()
	}
	return jt, nil
}

// errJoinTokenRace is what a join gets when another spent the same token
// in between (the join tries again).
var errJoinTokenRace = api.Errorf(api.ErrConflict, "join token is being used concurrently; retry")

// spend adds spending one use of the token to txn, which then commits only
// if nobody spent one meanwhile. A spent token stays until it expires.
func (jt *joinToken) spend(txn *store.Txn) {
	rec := jt.rec
	rec.Uses--
	b, _ := json.Marshal(rec)
	txn.If(clientv3.Compare(clientv3.ModRevision(jt.key), "=", jt.rev), errJoinTokenRace).
		PutRaw(jt.key, string(b), clientv3.WithIgnoreLease())
}
