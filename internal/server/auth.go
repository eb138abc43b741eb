package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
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
	User    string    `json:"user"`
	Role    string    `json:"role"`
	Created time.Time `json:"created"`
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

type ctxKey int

const userKey ctxKey = 0

// userOf returns who made the request.
func userOf(ctx context.Context) string {
	if u, ok := ctx.Value(userKey).(string); ok {
		return u
	}
	return "system"
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
		tok, err := s.auth.check(r.Context(), secret)
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
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey, tok.User)))
	})
}

type joinTokenRecord struct {
	Uses    int       `json:"uses"`
	Expires time.Time `json:"expires"`
	Cluster string    `json:"cluster"` // ID
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
	cl, err := s.pickCluster(req.Cluster)
	if err != nil {
		fail(w, err)
		return
	}
	secret := randomSecret()
	rec := joinTokenRecord{Uses: req.Uses, Expires: time.Now().UTC().Add(time.Duration(req.TTLSeconds) * time.Second), Cluster: cl.Metadata.ID}
	b, _ := json.Marshal(rec)
	// etcd forgets the token when it expires.
	lease, err := s.cli.Grant(r.Context(), int64(req.TTLSeconds))
	if err != nil {
		fail(w, fmt.Errorf("store join token: %w", err))
		return
	}
	if _, err := s.cli.Put(r.Context(), joinTokenPrefix+hashSecret(secret), string(b), clientv3.WithLease(lease.ID)); err != nil {
		fail(w, fmt.Errorf("store join token: %w", err))
		return
	}
	reply(w, http.StatusCreated, api.JoinToken{
		Token: "vdc1." + secret + "." + s.ca.Fingerprint(), Uses: rec.Uses, Expires: rec.Expires,
		Cluster: api.Ref{ID: cl.Metadata.ID, Name: cl.Metadata.Name},
	})
}

// useJoinToken spends one use of a join token and returns its record.
func (s *Server) useJoinToken(ctx context.Context, secret string) (joinTokenRecord, error) {
	key := joinTokenPrefix + hashSecret(secret)
	// Many hosts join with one token at once: serialize here, and let the
	// revision check settle races with other servers.
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	for try := 0; try < 100; try++ {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return joinTokenRecord{}, fmt.Errorf("read join token: %w", err)
		}
		if len(resp.Kvs) == 0 {
			return joinTokenRecord{}, api.Errorf(api.ErrUnauthorized, "unknown or expired join token; create a new one with `vdc host token create`")
		}
		var rec joinTokenRecord
		if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
			return rec, fmt.Errorf("read join token: %w", err)
		}
		if time.Now().After(rec.Expires) || rec.Uses < 1 {
			return rec, api.Errorf(api.ErrUnauthorized, "join token expired or used up; create a new one with `vdc host token create`")
		}
		rec.Uses--
		// A spent token stays until it expires, so a late user learns why.
		b, _ := json.Marshal(rec)
		op := clientv3.OpPut(key, string(b), clientv3.WithIgnoreLease())
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).Then(op).Commit()
		if err != nil {
			return rec, fmt.Errorf("spend join token: %w", err)
		}
		if tr.Succeeded {
			return rec, nil
		}
	}
	return joinTokenRecord{}, api.Errorf(api.ErrConflict, "join token is being used concurrently; retry")
}
