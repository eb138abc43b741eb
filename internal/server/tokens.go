package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
)

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
	txn := s.store.Txn()
	out := s.auth.Mint(txn, req.User, req.Description)
	s.log.Info("creating an API token", "id", out.ID, "user", out.User, "by", auth.User(ctx))
	s.commitResponse(w, ctx, txn, http.StatusCreated, out, "create token for "+out.User)
}

// GET /api/v1/tokens
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	list, err := s.auth.List(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, http.StatusOK, list)
}

// DELETE /api/v1/tokens/{id}
func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	tok, err := s.auth.Delete(r.Context(), r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	s.log.Warn("deleted an API token", "id", tok.ID, "user", tok.User, "by", auth.User(r.Context()))
	reply(w, http.StatusOK, tok)
}
