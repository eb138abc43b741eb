package server

import (
	"crypto/x509"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/enroll"
	"github.com/vdc-project/vdc/internal/pki"
)

// hostOfRequest authenticates an agent by its client certificate, which
// must be its host's current one.
func (s *Server) hostOfRequest(r *http.Request) (*api.Host, *x509.Certificate, error) {
	cert := pki.PeerCert(r.TLS)
	h, err := s.enroll.Authenticate(r.Context(), cert)
	return h, cert, err
}

// POST /api/v1/agent/join: see enroll.Service.Join.
func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request) error {
	var req api.JoinRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	resp, err := s.enroll.Join(r.Context(), req)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, resp)
	return nil
}

// POST /api/v1/agent/renew: see enroll.Service.Renew.
func (s *Server) agentRenew(w http.ResponseWriter, r *http.Request) error {
	h, cert, err := s.hostOfRequest(r)
	if err != nil {
		return err
	}
	var req api.RenewRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	resp, err := s.enroll.Renew(r.Context(), h, cert, req)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, resp)
	return nil
}

// POST /api/v1/hosts/{name}/replace: see enroll.Service.Replace.
func (s *Server) replaceHost(w http.ResponseWriter, r *http.Request) error {
	var req api.HostReplaceRequest
	if r.ContentLength != 0 {
		if err := decode(w, r, &req); err != nil {
			return err
		}
	}
	resp, err := s.enroll.Replace(r.Context(), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, resp)
	return nil
}

// The heartbeat handler checks a host's certificate with these.
var (
	matchCert      = enroll.MatchCert
	errCertRefused = enroll.ErrCertRefused
)

const certRefused = enroll.CertRefused
