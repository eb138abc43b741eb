package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/netguard"
)

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
		audit.SetUser(r.Context(), p.User)
		// An authenticated client's connections do not count against the
		// per-address limit.
		netguard.Trust(r.Context())
		next.ServeHTTP(w, r.WithContext(auth.With(r.Context(), p)))
	})
}

// POST /api/v1/join-tokens
func (s *Server) createJoinToken(w http.ResponseWriter, r *http.Request) error {
	var req api.JoinTokenRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	txn := s.store.Txn()
	tok, err := s.enroll.CreateToken(r.Context(), txn, req)
	if err != nil {
		return err
	}
	return s.idem.CommitResponse(w, r.Context(), txn, http.StatusCreated, tok, "store join token")
}
