package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

const caKey = store.SysPrefix + "ca"

// storedCA is the datacenter CA in the store. Its private key is sealed
// with the server's seal key (a file in its data dir, mode 0600), bound to
// the certificate: whoever reads the store without that file learns
// nothing of the key. Key holds it in clear in stores written before
// sealing; a server that reads one seals it in place.
type storedCA struct {
	Cert      string `json:"cert"`
	Key       string `json:"key,omitempty"`
	SealedKey string `json:"sealedKey,omitempty"`
	SealKeyID string `json:"sealKeyID,omitempty"`
}

// freshCA is a CA made by this server and not yet in the store.
type freshCA struct {
	ca     *pki.CA
	keyPEM []byte
}

// bootstrapPKI loads the datacenter CA from etcd, creating it on the very
// first start (racing servers agree through a create-if-absent), and issues
// this server's certificate for the API and for calling agents.
func (s *Server) bootstrapPKI(ctx context.Context) error {
	ca, err := s.loadOrCreateCA(ctx, s.cli, s.freshCA)
	if err != nil {
		return err
	}
	s.ca, s.freshCA = ca, nil
	if s.etcd != nil {
		if err := s.files.renewMember(ca, false); err != nil {
			return err
		}
		go s.keepMemberCert(ctx)
	}
	dns, ips := pki.LocalNames(append(s.cfg.TLSNames, s.name)...)
	certPEM, key, err := s.ca.Issue(pki.Names{CN: pki.ServerCN, DNS: dns, IPs: ips}, 365*24*time.Hour)
	if err != nil {
		return err
	}
	// The chain includes the CA so that a joining host can find the CA its
	// token pins.
	cert, err := tls.X509KeyPair(append(certPEM, s.ca.CertPEM...), key)
	if err != nil {
		return fmt.Errorf("load server certificate: %w", err)
	}
	s.tlsCert = cert
	ac := agent.NewClient(cert, s.ca.Pool())
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
