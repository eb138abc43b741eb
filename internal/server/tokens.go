package server

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
)

// POST /api/v1/tokens
func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	var req api.TokenCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	ctx := r.Context()
	if req.User == "" {
		req.User = auth.User(ctx)
	}
	if err := api.ValidateName("user", req.User); err != nil {
		return err
	}
	if len(req.Description) > 1024 {
		return api.Errorf(api.ErrInvalid, "description must be at most 1024 bytes, got %d", len(req.Description))
	}
	if err := api.ValidateText("description", req.Description); err != nil {
		return err
	}
	const maxExpiry = 10 * 365 * 24 * 3600
	if req.ExpiresSeconds < 0 || req.ExpiresSeconds > maxExpiry {
		return api.Errorf(api.ErrInvalid, "a token expires 1 s to 10 years after it is made, or never (0), got %d s", req.ExpiresSeconds)
	}
	var expires time.Time
	if req.ExpiresSeconds > 0 {
		expires = time.Now().UTC().Add(time.Duration(req.ExpiresSeconds) * time.Second)
	}
	if req.Role != "" {
		if err := s.cache.Sync(ctx); err != nil {
			return err
		}
		ro, err := s.role(req.Role)
		if err != nil {
			return err
		}
		req.Role = ro.Metadata.Name
	}
	txn := s.store.Txn()
	out := s.auth.Mint(txn, req.User, req.Description, expires, req.Role)
	s.log.Info("creating an API token", "id", out.ID, "user", out.User, "by", auth.User(ctx))
	return s.idem.CommitResponse(w, ctx, txn, http.StatusCreated, out, "create token for "+out.User)
}

// GET /api/v1/tokens
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	list, err := s.auth.List(r.Context())
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, list)
	return nil
}

// DELETE /api/v1/tokens/{id}
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) error {
	tok, err := s.auth.Delete(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.log.Warn("deleted an API token", "id", tok.ID, "user", tok.User, "by", auth.User(r.Context()))
	reply(w, http.StatusOK, tok)
	return nil
}

// POST /api/v1/tokens/rotate: a new token for the caller, which replaces
// the one the request came with (deleted once the new one is stored).
func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	who, _ := auth.From(ctx)
	if who.Token == "" {
		return api.Errorf(api.ErrInvalid, "this request came with no token to rotate")
	}
	txn := s.store.Txn()
	out := s.auth.Mint(txn, who.User, "rotated from "+who.Token, time.Time{}, who.Role)
	if _, err := txn.Commit(ctx); err != nil {
		return fmt.Errorf("store the new token of %s: %w", who.User, err)
	}
	if _, err := s.auth.Delete(ctx, who.Token); err != nil {
		return fmt.Errorf("new token %s made, but the old one %s is not deleted: %w (delete it with vdc token rm %s)", out.ID, who.Token, err, who.Token)
	}
	s.log.Warn("rotated an API token", "user", who.User, "old", who.Token, "new", out.ID)
	reply(w, http.StatusCreated, out)
	return nil
}
