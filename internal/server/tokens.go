package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/store"
)

// API tokens: what users send as "Authorization: Bearer". Only the hash
// of each secret is stored, under tokenPrefix; a token's ID is the start
// of that hash, enough to name it and useless to guess the secret from.
// Deleting a token works at once: the server that deletes it forgets it
// before answering, the others within their watch's delay (see
// authenticator). A deleted token's hash is kept under revokedPrefix so
// that a restarted server does not register its admin token again from
// <data>/admin-token once it has been deleted (it makes a new one).

const (
	revokedPrefix     = store.SysPrefix + "tokens-revoked/"
	tokenIDLen        = 16
	tokenSecretPrefix = "vdct."
)

func tokenID(hash string) string { return hash[:tokenIDLen] }

func tokenView(hash string, t userToken) api.Token {
	return api.Token{ID: tokenID(hash), User: t.User, Description: t.Description, Created: t.Created}
}

// POST /api/v1/tokens
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req api.TokenCreateRequest
	if !decode(w, r, &req) {
		return
	}
	ctx := r.Context()
	if req.User == "" {
		req.User = auth.User(ctx)
	}
	if err := api.ValidateName("user", req.User); err != nil {
		fail(w, err)
		return
	}
	if len(req.Description) > 1024 {
		fail(w, api.Errorf(api.ErrInvalid, "description must be at most 1024 bytes, got %d", len(req.Description)))
		return
	}
	if err := api.ValidateText("description", req.Description); err != nil {
		fail(w, err)
		return
	}
	secret := tokenSecretPrefix + randomSecret()
	h := hashSecret(secret)
	t := userToken{User: req.User, Role: "admin", Description: req.Description, Created: time.Now().UTC()}
	b, _ := json.Marshal(t)
	txn := s.store.Txn().Claim(tokenPrefix+h, string(b), api.Errorf(api.ErrConflict, "a token with this secret exists (retry)"))
	out := tokenView(h, t)
	out.Token = secret
	s.log.Info("creating an API token", "id", out.ID, "user", t.User, "by", auth.User(ctx))
	s.commitResponse(w, ctx, txn, http.StatusCreated, out, "create token for "+t.User)
}

// GET /api/v1/tokens
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	resp, err := s.cli.Get(r.Context(), tokenPrefix, clientv3.WithPrefix())
	if err != nil {
		fail(w, fmt.Errorf("list tokens: %w", err))
		return
	}
	items := []api.Token{}
	for _, kv := range resp.Kvs {
		var t userToken
		if err := json.Unmarshal(kv.Value, &t); err != nil {
			continue
		}
		items = append(items, tokenView(strings.TrimPrefix(string(kv.Key), tokenPrefix), t))
	}
	sort.Slice(items, func(i, j int) bool { return items[i].Created.Before(items[j].Created) })
	reply(w, http.StatusOK, api.List[api.Token]{Items: items, Revision: resp.Header.Revision})
}

// DELETE /api/v1/tokens/{id}
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PathValue("id")
	if _, err := hex.DecodeString(id); err != nil || len(id) != tokenIDLen || strings.ToLower(id) != id {
		fail(w, api.Errorf(api.ErrInvalid, "a token ID is %d lower-case hex digits (see vdc token ls), got %q", tokenIDLen, id))
		return
	}
	resp, err := s.cli.Get(ctx, tokenPrefix+id, clientv3.WithPrefix())
	if err != nil {
		fail(w, fmt.Errorf("delete token %s: %w", id, err))
		return
	}
	if len(resp.Kvs) != 1 {
		fail(w, api.Errorf(api.ErrNotFound, "token %s not found", id))
		return
	}
	kv := resp.Kvs[0]
	h := strings.TrimPrefix(string(kv.Key), tokenPrefix)
	var t userToken
	_ = json.Unmarshal(kv.Value, &t)
	rb, _ := json.Marshal(map[string]any{"revoked": time.Now().UTC(), "by": auth.User(ctx), "user": t.User})
	txn := s.store.Txn().
		If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision), api.Errorf(api.ErrConflict, "token %s changed meanwhile; retry", id)).
		DeleteRaw(string(kv.Key)).
		PutRaw(revokedPrefix+h, string(rb))
	if _, err := txn.Commit(ctx); err != nil {
		fail(w, fmt.Errorf("delete token %s: %w", id, err))
		return
	}
	// This server stops accepting it before answering; the others when
	// their watch sees the delete.
	s.auth.forget(h)
	s.log.Warn("deleted an API token", "id", id, "user", t.User, "by", auth.User(ctx))
	reply(w, http.StatusOK, tokenView(h, t))
}

// revoked says whether a token (its secret) was deleted.
func (s *Server) revoked(ctx context.Context, secret string) (bool, error) {
	resp, err := s.cli.Get(ctx, revokedPrefix+hashSecret(secret), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("check token revocation: %w", err)
	}
	return resp.Count > 0, nil
}
