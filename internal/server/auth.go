package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/store"
)

const joinTokenPrefix = store.SysPrefix + "jointokens/"

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
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vdc", error="invalid_token"`)
			if errors.Is(err, api.ErrUnauthorized) {
				w.Header().Set("Connection", "close")
			}
			fail(w, err)
			return
		}
		if err := s.authz.Authorize(r.Context(), p, r.Method+" "+r.Pattern, "", ""); err != nil {
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
	secret := auth.NewSecret()
	b, _ := json.Marshal(rec)
	txn.PutRaw(joinTokenPrefix+auth.Hash(secret), string(b), clientv3.WithLease(lease.ID))
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
	key := joinTokenPrefix + auth.Hash(parts[1])
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
