package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

// A host's identity is its certificate, and the server accepts one
// certificate per host: the one whose serial is recorded in the host's
// status (api.HostCertificate). The record lives on the host object rather
// than under store.SysPrefix because every agent call checks it: the
// watch-fed cache has it at hand with no etcd read, it is written in the
// same transaction as the host's creation, a renewal or a replace, it goes
// away with the host, and `vdc host info` can show it. A serial is no
// secret (every TLS handshake shows it).

const (

	// defaultReplaceTTL is how long the token of a host replace is valid.
	defaultReplaceTTL = time.Hour
)

// POST /api/v1/agent/join: a host presents a join token and a CSR and gets
// its identity. The token is checked before anything else, and every bad
// token gets the same answer, so a caller without a good one cannot learn
// which host names exist. A token made by `vdc host replace` joins as that
// host (same ID, same VMs); any other joins a new host only.
func (s *Server) agentJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	if !decode(w, r, &req) {
		return
	}
	ctx := r.Context()
	// Many hosts join with one token at once: serialize here, and let the
	// revision checks settle races with other servers.
	s.joinMu.Lock()
	defer s.joinMu.Unlock()
	var resp api.JoinResponse
	raced := api.Errorf(api.ErrConflict, "join as host %q: the inventory kept changing; retry", req.Name)
	err := retry.Conflicts(ctx, 20, func() error {
		var again bool
		var err error
		if resp, again, err = s.join(ctx, req); again {
			return raced
		}
		if err != nil {
			return retry.Stop(err)
		}
		return nil
	})
	if err != nil {
		fail(w, err)
		return
	}
	reply(w, http.StatusOK, resp)
}

// join makes one attempt; again says that someone wrote in between.
func (s *Server) join(ctx context.Context, req api.JoinRequest) (resp api.JoinResponse, again bool, err error) {
	jt, err := s.readJoinToken(ctx, req.Token)
	if err != nil {
		return resp, false, err
	}
	netguard.Trust(ctx) // a good token: off the per-address limit
	if err := api.ValidateName("host", req.Name); err != nil {
		return resp, false, err
	}
	if err := s.cache.Sync(ctx); err != nil {
		return resp, false, err
	}
	var host, cur *api.Host
	if jt.rec.Host != "" {
		o, ok := s.cache.Get(api.KindHost, jt.rec.Host)
		if !ok {
			return resp, false, api.Errorf(api.ErrConflict, "the host this token was made for (by `vdc host replace`) has been removed; join with a token from `vdc host token create`")
		}
		cur = o.(*api.Host)
		if c := cur.Status.Certificate; c == nil || c.Serial != "" || !c.Revoked.Equal(jt.rec.Replaced) {
			return resp, false, errBadJoinToken() // a later replace, or the join, superseded it
		}
		if cur.Metadata.Name != req.Name {
			return resp, false, api.Errorf(api.ErrConflict, "this token joins as host %q only (it was made by `vdc host replace %s`), not as %q",
				cur.Metadata.Name, cur.Metadata.Name, req.Name)
		}
		host = store.Clone(cur)
	} else {
		if _, ok := s.cache.Lookup(api.KindHost, req.Name); ok {
			return resp, false, api.Errorf(api.ErrConflict, "host %q already exists, and a join token makes new hosts only; to join a machine as host %q again (reinstalled, or its keys lost), run `vdc host replace %s` and join with the token it prints",
				req.Name, req.Name, req.Name)
		}
		if _, ok := s.cache.Get(api.KindCluster, jt.rec.Cluster); !ok {
			return resp, false, api.Errorf(api.ErrConflict, "the join token's cluster no longer exists")
		}
		host = &api.Host{
			Metadata: api.ObjectMeta{ID: store.NewID(), Name: req.Name},
			Spec:     api.HostSpec{Cluster: api.Ref{ID: jt.rec.Cluster}},
			Status:   api.HostStatus{Connection: api.HostDisconnected},
		}
	}
	certPEM, cert, err := s.issueHostCert(req.CSR, host.Metadata.ID)
	if err != nil {
		return resp, false, err
	}
	host.Status.Certificate = &api.HostCertificate{Serial: pki.Serial(cert), Issued: time.Now().UTC(), NotAfter: cert.NotAfter}
	txn := s.store.Txn() // which encodes the host as it is when added
	if cur != nil {
		txn.Update(cur, host)
	} else {
		txn.Create(host)
	}
	jt.spend(txn)
	replaced := jt.rec.Host != ""
	t := tasks.Done(tasks.New(ctx, api.OpHostJoin, host, nil), map[string]any{"serial": pki.Serial(cert), "notAfter": cert.NotAfter, "replaced": replaced})
	t.Owner = "join-token"
	if _, err := s.submitter.Submit(ctx, txn, t); err != nil {
		return resp, errors.Is(err, api.ErrConflict), fmt.Errorf("join host %q: %w", req.Name, err)
	}
	s.log.Info("host joined", "host", req.Name, "hostID", host.Metadata.ID, "replaced", replaced, "serial", pki.Serial(cert), "notAfter", cert.NotAfter)
	return api.JoinResponse{HostID: host.Metadata.ID, Certificate: string(certPEM), CA: string(s.ca.CertPEM)}, false, nil
}

// issueHostCert signs a host's CSR for the server's certificate lifetime.
// The identity comes from the host ID, never from the CSR.
func (s *Server) issueHostCert(csrPEM, hostID string) ([]byte, *x509.Certificate, error) {
	certPEM, err := s.ca.SignCSR([]byte(csrPEM), pki.Names{CN: pki.HostCNPrefix + hostID, DNS: []string{pki.HostDNSName(hostID)}}, s.cfg.HostCertTTL)
	if err != nil {
		return nil, nil, api.Errorf(api.ErrInvalid, "%v", err)
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("read the certificate just issued for host %s: %w", hostID, err)
	}
	return certPEM, cert, nil
}

// certMatch is how a presented certificate relates to a host's record.
type certMatch int

const (
	certRefused   certMatch = iota
	certCurrent             // the recorded serial
	certPrevious            // the one renewed from, while the new one is unused
	certUntracked           // the host has no record: joined before serials were kept
)

func matchCert(h *api.Host, serial string) certMatch {
	c := h.Status.Certificate
	switch {
	case c == nil:
		return certUntracked
	case c.Serial != "" && c.Serial == serial:
		return certCurrent
	case c.Previous != "" && c.Previous == serial:
		return certPrevious
	}
	return certRefused
}

func errCertRefused(h *api.Host, serial string) error {
	name := h.Metadata.Name
	if c := h.Status.Certificate; c != nil && c.Serial == "" && !c.Revoked.IsZero() {
		return api.Errorf(api.ErrUnauthorized, "the certificate of host %q was revoked at %s by `vdc host replace %s`: join with the token that printed",
			name, c.Revoked.Format(time.RFC3339), name)
	}
	return api.Errorf(api.ErrUnauthorized, "certificate %s is not the current certificate of host %q (it was renewed or replaced since); the server accepts only the current one",
		serial, name)
}

// currentHost finds the host a certificate names and says whether the
// certificate is one the server accepts for it. It reads etcd when the
// cache disagrees: the host may just have joined, renewed or been replaced
// through another server.
func (s *Server) currentHost(ctx context.Context, id, serial string) (*api.Host, certMatch, error) {
	if o, ok := s.cache.Get(api.KindHost, id); ok {
		if h := o.(*api.Host); matchCert(h, serial) != certRefused {
			return h, matchCert(h, serial), nil
		}
	}
	o, err := s.store.Get(ctx, api.KindHost, id)
	if errors.Is(err, api.ErrNotFound) {
		return nil, certRefused, api.Errorf(api.ErrForbidden, "host %s was removed from the inventory and its certificate is no longer accepted; join again with a new token", id)
	}
	if err != nil {
		return nil, certRefused, fmt.Errorf("look up host %s: %w", id, err)
	}
	h := o.(*api.Host)
	return h, matchCert(h, serial), nil
}

// hostOfRequest authenticates an agent by its client certificate, which
// must be its host's current one.
func (s *Server) hostOfRequest(r *http.Request) (*api.Host, *x509.Certificate, error) {
	cert := pki.PeerCert(r.TLS)
	var id string
	ok := false
	if cert != nil {
		id, ok = strings.CutPrefix(cert.Subject.CommonName, pki.HostCNPrefix)
	}
	if !ok {
		return nil, nil, api.Errorf(api.ErrUnauthorized, "agent calls need a host certificate")
	}
	ctx := r.Context()
	serial := pki.Serial(cert)
	h, m, err := s.currentHost(ctx, id, serial)
	if err != nil {
		return nil, nil, err
	}
	switch m {
	case certRefused:
		return nil, nil, errCertRefused(h, serial)
	case certCurrent:
		if h.Status.Certificate.Previous == "" {
			netguard.Trust(ctx) // a host: off the per-address limit
			return h, cert, nil
		}
		// The host uses its renewed certificate: the old one is done.
		err = state.UpdateKind(ctx, s.st, nil, api.KindHost, id, func(o api.Object) error {
			c := o.(*api.Host).Status.Certificate
			if c == nil || c.Serial != serial || c.Previous == "" {
				return state.ErrUnchanged
			}
			c.Previous = ""
			return nil
		})
	case certUntracked:
		// A host that joined before the server kept serials: the first
		// certificate it shows becomes its current one (and, being long
		// lived, is renewed at once: see RenewCertificate).
		err = state.UpdateKind(ctx, s.st, nil, api.KindHost, id, func(o api.Object) error {
			h := o.(*api.Host)
			switch matchCert(h, serial) {
			case certRefused:
				return errCertRefused(h, serial)
			case certCurrent, certPrevious:
				return state.ErrUnchanged
			}
			h.Status.Certificate = &api.HostCertificate{Serial: serial, Issued: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC()}
			s.log.Warn("recording the certificate of a host that joined before certificates were tracked", "host", h.Metadata.Name, "serial", serial)
			return nil
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("record the certificate of host %s: %w", h.Metadata.Name, err)
	}
	// A host's connections do not count against the per-address limit.
	netguard.Trust(ctx)
	return h, cert, nil
}

// peerIsCurrent checks, when the server calls an agent, that the agent's
// serving certificate is its host's current one.
func (s *Server) peerIsCurrent(hostID string, cert *x509.Certificate) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, m, err := s.currentHost(ctx, hostID, pki.Serial(cert))
	if err == nil && m == certRefused {
		err = errCertRefused(h, pki.Serial(cert))
	}
	return err
}

// POST /api/v1/agent/renew: a host trades its current certificate for a
// new one. The new serial is recorded in the same write that issues it;
// the old certificate is accepted only until the host first uses the new
// one, so that a host that never got the answer can renew again.
func (s *Server) agentRenew(w http.ResponseWriter, r *http.Request) {
	h, cert, err := s.hostOfRequest(r)
	if err != nil {
		fail(w, err)
		return
	}
	var req api.RenewRequest
	if !decode(w, r, &req) {
		return
	}
	ctx := r.Context()
	certPEM, newCert, err := s.issueHostCert(req.CSR, h.Metadata.ID)
	if err != nil {
		fail(w, fmt.Errorf("renew certificate of host %q: %w", h.Metadata.Name, err))
		return
	}
	presented, serial := pki.Serial(cert), pki.Serial(newCert)
	t := tasks.Done(tasks.New(ctx, api.OpHostRenew, h, nil), map[string]any{"serial": serial, "notAfter": newCert.NotAfter, "previous": presented})
	t.Owner = "host " + h.Metadata.Name
	_, err = s.changeHost(ctx, h.Metadata.ID, t, func(upd *api.Host, _ *store.Txn) error {
		if matchCert(upd, presented) == certRefused {
			return errCertRefused(upd, presented)
		}
		upd.Status.Certificate = &api.HostCertificate{Serial: serial, Issued: time.Now().UTC(), NotAfter: newCert.NotAfter, Previous: presented}
		return nil
	})
	if err != nil {
		fail(w, fmt.Errorf("renew certificate of host %q: %w", h.Metadata.Name, err))
		return
	}
	s.log.Info("renewed a host certificate", "host", h.Metadata.Name, "serial", serial, "previous", presented, "notAfter", newCert.NotAfter)
	reply(w, http.StatusOK, api.RenewResponse{Certificate: string(certPEM), CA: string(s.ca.CertPEM)})
}

// POST /api/v1/hosts/{name}/replace: revoke a host's certificate at once
// and make a one-use token, valid for a short while, that joins a machine
// as this host (same ID, same VMs): a reinstalled machine, or one whose
// keys may have leaked.
func (s *Server) replaceHost(w http.ResponseWriter, r *http.Request) {
	var req api.HostReplaceRequest
	if r.ContentLength != 0 && !decode(w, r, &req) {
		return
	}
	if req.TTLSeconds == 0 {
		req.TTLSeconds = int(defaultReplaceTTL / time.Second)
	}
	if req.TTLSeconds < 1 || req.TTLSeconds > 7*24*3600 {
		fail(w, api.Errorf(api.ErrInvalid, "ttlSeconds must be between 1 and a week (604800), got %d", req.TTLSeconds))
		return
	}
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	o, err := s.inv.Lookup(api.KindHost, r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	h := o.(*api.Host)
	now := time.Now().UTC()
	rec := joinTokenRecord{Uses: 1, Expires: now.Add(time.Duration(req.TTLSeconds) * time.Second), Cluster: h.Spec.Cluster.ID,
		Host: h.Metadata.ID, Replaced: now}
	t := tasks.Done(tasks.New(ctx, api.OpHostReplace, h, req), nil)
	var token, was string
	_, err = s.changeHost(ctx, h.Metadata.ID, t, func(upd *api.Host, txn *store.Txn) error {
		was = ""
		if c := upd.Status.Certificate; c != nil {
			was = c.Serial
		}
		upd.Status.Certificate = &api.HostCertificate{Revoked: now}
		var err error
		token, err = s.addJoinToken(ctx, txn, rec)
		return err
	})
	if err != nil {
		fail(w, fmt.Errorf("replace host %q: %w", h.Metadata.Name, err))
		return
	}
	s.agents.Forget(h.Metadata.ID) // no more calls over connections made with the old certificate
	s.log.Warn("revoked a host's certificate for a replace", "host", h.Metadata.Name, "serial", was, "tokenExpires", rec.Expires)
	cluster := api.Ref{ID: h.Spec.Cluster.ID}
	if c, ok := s.cache.Get(api.KindCluster, cluster.ID); ok {
		cluster.Name = c.GetMeta().Name
	}
	reply(w, http.StatusOK, api.HostReplaceResponse{
		Task:  t,
		Token: api.JoinToken{Token: token, Uses: 1, Expires: rec.Expires, Cluster: cluster},
		Host:  api.Ref{ID: h.Metadata.ID, Name: h.Metadata.Name},
	})
}

// changeHost writes a change to a host together with its (finished) task,
// starting again from the stored host when a heartbeat or another writer
// got in between. fn may add writes to the transaction.
func (s *Server) changeHost(ctx context.Context, id string, t *api.Task, fn func(*api.Host, *store.Txn) error) (*api.Host, error) {
	var upd *api.Host
	fresh, raced := false, false
	err := retry.Conflicts(ctx, 20, func() error {
		raced = false
		cur, ok := state.Get[*api.Host](s.st, id)
		if !ok || fresh {
			var err error
			if cur, err = state.Read[*api.Host](ctx, s.st, id); err != nil {
				return retry.Stop(err)
			}
		}
		fresh = true
		upd = store.Clone(cur)
		txn := s.store.Txn()
		if err := fn(upd, txn); err != nil {
			return retry.Stop(err)
		}
		txn.Update(cur, upd)
		_, err := s.submitter.Submit(ctx, txn, t)
		raced = errors.Is(err, api.ErrConflict)
		return err
	})
	if raced {
		return nil, api.Errorf(api.ErrConflict, "host %s keeps changing; gave up", id)
	}
	if err != nil {
		return nil, err
	}
	return upd, nil
}
