// Package enroll is how hosts get and keep their identity: join tokens
// (made by `vdc host token create` and `vdc host replace`), the join that
// trades a token and a CSR for a host certificate, renewals, replaces that
// revoke a host's certificate, and the check, on every agent call either
// way, that a host presents its current certificate.
//
// enroll depends on state, tasks, hosts (to drop a replaced host's
// connections), inventory and pki.
package enroll

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

// defaultReplaceTTL is how long the token of a host replace is valid.
const defaultReplaceTTL = time.Hour

// Service enrolls hosts.
type Service struct {
	st      *state.State
	inv     *inventory.Inventory
	tasks   *tasks.Submitter
	hosts   hosts.Client
	ca      *pki.CA
	certTTL time.Duration
	log     *slog.Logger

	joinMu sync.Mutex
}

// New returns the enrollment service: host certificates come from ca and
// are valid for certTTL.
func New(inv *inventory.Inventory, ca *pki.CA, certTTL time.Duration, log *slog.Logger) *Service {
	return &Service{st: inv.St, inv: inv, tasks: inv.Tasks, hosts: inv.Hosts, ca: ca, certTTL: certTTL, log: log}
}

// CreateToken makes a join token for req's cluster, added to txn.
func (e *Service) CreateToken(ctx context.Context, txn *store.Txn, req api.JoinTokenRequest) (api.JoinToken, error) {
	if req.Uses == 0 {
		req.Uses = 1
	}
	if req.TTLSeconds == 0 {
		req.TTLSeconds = 24 * 3600
	}
	if req.Uses < 1 || req.Uses > 100000 {
		return api.JoinToken{}, api.Errorf(api.ErrInvalid, "uses must be between 1 and 100000, got %d", req.Uses)
	}
	if req.TTLSeconds < 1 || req.TTLSeconds > 365*24*3600 {
		return api.JoinToken{}, api.Errorf(api.ErrInvalid, "ttlSeconds must be between 1 and one year, got %d", req.TTLSeconds)
	}
	if err := e.st.Cache.Sync(ctx); err != nil {
		return api.JoinToken{}, err
	}
	cl, err := e.inv.PickCluster(req.Cluster)
	if err != nil {
		return api.JoinToken{}, err
	}
	rec := joinTokenRecord{Uses: req.Uses, Expires: time.Now().UTC().Add(time.Duration(req.TTLSeconds) * time.Second), Cluster: cl.Metadata.ID}
	tok, err := e.addJoinToken(ctx, txn, rec)
	if err != nil {
		return api.JoinToken{}, fmt.Errorf("store join token: %w", err)
	}
	return api.JoinToken{Token: tok, Uses: rec.Uses, Expires: rec.Expires, Cluster: api.Ref{ID: cl.Metadata.ID, Name: cl.Metadata.Name}}, nil
}

// Join trades a join token and a CSR for a host's identity. The token is
// checked before anything else, and every bad token gets the same answer,
// so a caller without a good one cannot learn which host names exist. A
// token made by Replace joins as that host (same ID, same VMs); any other
// joins a new host only.
func (e *Service) Join(ctx context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	// Many hosts join with one token at once: serialize here, and let the
	// revision checks settle races with other servers.
	e.joinMu.Lock()
	defer e.joinMu.Unlock()
	var resp api.JoinResponse
	raced := api.Errorf(api.ErrConflict, "join as host %q: the inventory kept changing; retry", req.Name)
	err := retry.Conflicts(ctx, 20, func() error {
		var again bool
		var err error
		if resp, again, err = e.join(ctx, req); again {
			return raced
		}
		if err != nil {
			return retry.Stop(err)
		}
		return nil
	})
	return resp, err
}

// Renew trades host h's current certificate (cert) for a new one. The new
// serial is recorded in the same write that issues it; the old certificate
// is accepted only until the host first uses the new one, so that a host
// that never got the answer can renew again.
func (e *Service) Renew(ctx context.Context, h *api.Host, cert *x509.Certificate, req api.RenewRequest) (api.RenewResponse, error) {
	certPEM, newCert, err := e.issueHostCert(req.CSR, h.Metadata.ID)
	if err != nil {
		return api.RenewResponse{}, fmt.Errorf("renew certificate of host %q: %w", h.Metadata.Name, err)
	}
	presented, serial := pki.Serial(cert), pki.Serial(newCert)
	t := tasks.Done(tasks.New(ctx, api.OpHostRenew, h, nil), map[string]any{"serial": serial, "notAfter": newCert.NotAfter, "previous": presented})
	t.Owner = "host " + h.Metadata.Name
	_, err = e.changeHost(ctx, h.Metadata.ID, t, func(upd *api.Host, _ *store.Txn) error {
		if MatchCert(upd, presented) == CertRefused {
			return ErrCertRefused(upd, presented)
		}
		upd.Status.Certificate = &api.HostCertificate{Serial: serial, Issued: time.Now().UTC(), NotAfter: newCert.NotAfter, Previous: presented}
		return nil
	})
	if err != nil {
		return api.RenewResponse{}, fmt.Errorf("renew certificate of host %q: %w", h.Metadata.Name, err)
	}
	e.log.Info("renewed a host certificate", "host", h.Metadata.Name, "serial", serial, "previous", presented, "notAfter", newCert.NotAfter)
	return api.RenewResponse{Certificate: string(certPEM), CA: string(e.ca.CertPEM)}, nil
}

// Replace revokes the certificate of the host named at once and makes a one-use token,
// valid for a short while, that joins a machine as this host (same ID,
// same VMs): a reinstalled machine, or one whose keys may have leaked.
func (e *Service) Replace(ctx context.Context, name string, req api.HostReplaceRequest) (api.HostReplaceResponse, error) {
	if req.TTLSeconds == 0 {
		req.TTLSeconds = int(defaultReplaceTTL / time.Second)
	}
	if req.TTLSeconds < 1 || req.TTLSeconds > 7*24*3600 {
		return api.HostReplaceResponse{}, api.Errorf(api.ErrInvalid, "ttlSeconds must be between 1 and a week (604800), got %d", req.TTLSeconds)
	}
	if err := e.st.Cache.Sync(ctx); err != nil {
		return api.HostReplaceResponse{}, err
	}
	h, err := state.Find[*api.Host](e.st, name)
	if err != nil {
		return api.HostReplaceResponse{}, err
	}
	now := time.Now().UTC()
	rec := joinTokenRecord{Uses: 1, Expires: now.Add(time.Duration(req.TTLSeconds) * time.Second), Cluster: h.Spec.Cluster.ID,
		Host: h.Metadata.ID, Replaced: now}
	t := tasks.Done(tasks.New(ctx, api.OpHostReplace, h, req), nil)
	var token, was string
	_, err = e.changeHost(ctx, h.Metadata.ID, t, func(upd *api.Host, txn *store.Txn) error {
		was = ""
		if c := upd.Status.Certificate; c != nil {
			was = c.Serial
		}
		upd.Status.Certificate = &api.HostCertificate{Revoked: now}
		var err error
		token, err = e.addJoinToken(ctx, txn, rec)
		return err
	})
	if err != nil {
		return api.HostReplaceResponse{}, fmt.Errorf("replace host %q: %w", h.Metadata.Name, err)
	}
	e.hosts.Forget(h.Metadata.ID) // no more calls over connections made with the old certificate
	e.log.Warn("revoked a host's certificate for a replace", "host", h.Metadata.Name, "serial", was, "tokenExpires", rec.Expires)
	cluster := api.Ref{ID: h.Spec.Cluster.ID}
	if c, ok := state.Get[*api.Cluster](e.st, cluster.ID); ok {
		cluster.Name = c.Metadata.Name
	}
	return api.HostReplaceResponse{
		Task:  t,
		Token: api.JoinToken{Token: token, Uses: 1, Expires: rec.Expires, Cluster: cluster},
		Host:  api.Ref{ID: h.Metadata.ID, Name: h.Metadata.Name},
	}, nil
}
