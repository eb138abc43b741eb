package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/state"
)

// openEmbedded starts the embedded etcd member with mutual TLS (see
// ca.Authority.OpenEmbedded).
func (s *Server) openEmbedded(ctx context.Context) error {
	e, err := s.authority.OpenEmbedded(ctx, filepath.Join(s.cfg.DataDir, "etcd"))
	if err != nil {
		return err
	}
	s.etcd, s.cli = e, e.Client
	return nil
}

// EtcdClientURL is where the embedded etcd member serves clients with a
// certificate from the datacenter CA (CN vdc-server), or "" with an
// external etcd.
func (s *Server) EtcdClientURL() string {
	if s.etcd == nil {
		return ""
	}
	return s.etcd.ClientURL()
}

// bootstrapPKI loads the datacenter CA from etcd, creating it on the very
// first start, keeps the embedded member's certificate renewed, and issues
// this server's certificate for the API and for calling agents.
func (s *Server) bootstrapPKI(ctx context.Context) error {
	var err error
	if s.ca, err = s.authority.Load(ctx, s.cli); err != nil {
		return err
	}
	if s.etcd != nil {
		if err := s.authority.KeepMemberCert(ctx); err != nil {
			return err
		}
	}
	if s.tlsCert, err = s.authority.ServingCert(append(s.cfg.TLSNames, s.name)...); err != nil {
		return err
	}
	ac := agent.NewClient(s.tlsCert, s.ca.Pool())
	ac.Lookup = func(hostID string) (string, bool) {
		if h, ok := state.Get[*api.Host](s.st, hostID); ok {
			return h.Status.Address, h.Status.Connection == api.HostConnected
		}
		return "", false
	}
	ac.RestartWait = s.cfg.HostTimeout
	ac.CheckPeer = func(hostID string, cert *x509.Certificate) error { return s.enroll.PeerIsCurrent(hostID, cert) }
	s.agents = ac
	return nil
}

// bootstrapAdmin creates the admin token on first start and writes the
// client config (URL, CA, token) to <data>/admin.json on every start.
func (s *Server) bootstrapAdmin(ctx context.Context) error {
	tokPath := filepath.Join(s.cfg.DataDir, "admin-token")
	b, err := os.ReadFile(tokPath)
	tok := strings.TrimSpace(string(b))
	revoked := false
	if err == nil && tok != "" {
		if revoked, err = s.auth.Revoked(ctx, tok); err != nil {
			return err
		}
		if revoked {
			s.log.Warn("the admin token in the data dir was deleted through the API; making a new one", "file", tokPath)
		}
	}
	switch {
	case err == nil && tok != "" && !revoked:
		ok, err := s.auth.Exists(ctx, tok)
		if err != nil {
			return err
		}
		if !ok { // data dir and store disagree (e.g. a new etcd): register it
			if err := s.auth.Create(ctx, tok, "admin", "admin"); err != nil {
				return err
			}
		}
	case err == nil || errors.Is(err, os.ErrNotExist):
		tok = "vdca." + auth.NewSecret()
		if err := s.auth.Create(ctx, tok, "admin", "admin"); err != nil {
			return err
		}
		if err := os.WriteFile(tokPath, []byte(tok+"\n"), 0o600); err != nil {
			return fmt.Errorf("save admin token: %w", err)
		}
		s.log.Info("created the admin token", "file", tokPath)
	default:
		return fmt.Errorf("read admin token: %w", err)
	}
	cc := client.Config{Server: s.url, CA: string(s.ca.CertPEM), Token: tok}
	return cc.Save(s.ClientConfigPath())
}
