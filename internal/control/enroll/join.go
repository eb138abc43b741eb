package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
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

// join makes one attempt; again says that someone wrote in between.
func (e *Service) join(ctx context.Context, req api.JoinRequest) (resp api.JoinResponse, again bool, err error) {
	jt, err := e.readJoinToken(ctx, req.Token)
	if err != nil {
		return resp, false, err
	}
	netguard.Trust(ctx) // a good token: off the per-address limit
	if err := api.ValidateName("host", req.Name); err != nil {
		return resp, false, err
	}
	if err := e.st.Cache.Sync(ctx); err != nil {
		return resp, false, err
	}
	var host, cur *api.Host
	if jt.rec.Host != "" {
		o, ok := e.st.Cache.Get(api.KindHost, jt.rec.Host)
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
		if _, ok := e.st.Cache.Lookup(api.KindHost, req.Name); ok {
			return resp, false, api.Errorf(api.ErrConflict, "host %q already exists, and a join token makes new hosts only; to join a machine as host %q again (reinstalled, or its keys lost), run `vdc host replace %s` and join with the token it prints",
				req.Name, req.Name, req.Name)
		}
		if _, ok := e.st.Cache.Get(api.KindCluster, jt.rec.Cluster); !ok {
			return resp, false, api.Errorf(api.ErrConflict, "the join token's cluster no longer exists")
		}
		host = &api.Host{
			Metadata: api.ObjectMeta{ID: store.NewID(), Name: req.Name},
			Spec:     api.HostSpec{Cluster: api.Ref{ID: jt.rec.Cluster}},
			Status:   api.HostStatus{Connection: api.HostDisconnected},
		}
	}
	certPEM, cert, err := e.issueHostCert(req.CSR, host.Metadata.ID)
	if err != nil {
		return resp, false, err
	}
	host.Status.Certificate = &api.HostCertificate{Serial: pki.Serial(cert), Issued: time.Now().UTC(), NotAfter: cert.NotAfter}
	txn := e.st.Store.Txn() // which encodes the host as it is when added
	if cur != nil {
		txn.Update(cur, host)
	} else {
		txn.Create(host)
	}
	jt.spend(txn)
	replaced := jt.rec.Host != ""
	t := tasks.Done(tasks.New(ctx, api.OpHostJoin, host, nil), map[string]any{"serial": pki.Serial(cert), "notAfter": cert.NotAfter, "replaced": replaced})
	t.Owner = "join-token"
	if _, err := e.tasks.Submit(ctx, txn, t); err != nil {
		return resp, errors.Is(err, api.ErrConflict), fmt.Errorf("join host %q: %w", req.Name, err)
	}
	e.log.Info("host joined", "host", req.Name, "hostID", host.Metadata.ID, "replaced", replaced, "serial", pki.Serial(cert), "notAfter", cert.NotAfter)
	return api.JoinResponse{HostID: host.Metadata.ID, Certificate: string(certPEM), CA: string(e.ca.CertPEM)}, false, nil
}

// issueHostCert signs a host's CSR for the server's certificate lifetime.
// The identity comes from the host ID, never from the CSR.
func (e *Service) issueHostCert(csrPEM, hostID string) ([]byte, *x509.Certificate, error) {
	certPEM, err := e.ca.SignCSR([]byte(csrPEM), pki.Names{CN: pki.HostCNPrefix + hostID, DNS: []string{pki.HostDNSName(hostID)}}, e.certTTL)
	if err != nil {
		return nil, nil, api.Errorf(api.ErrInvalid, "%v", err)
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("read the certificate just issued for host %s: %w", hostID, err)
	}
	return certPEM, cert, nil
}

// CertMatch is how a presented certificate relates to a host's record.
type CertMatch int

const (
	CertRefused   CertMatch = iota
	CertCurrent             // the recorded serial
	CertPrevious            // the one renewed from, while the new one is unused
	CertUntracked           // the host has no record: joined before serials were kept
)

// MatchCert says how a certificate (its serial) relates to host h's record.
func MatchCert(h *api.Host, serial string) CertMatch {
	c := h.Status.Certificate
	switch {
	case c == nil:
		return CertUntracked
	case c.Serial != "" && c.Serial == serial:
		return CertCurrent
	case c.Previous != "" && c.Previous == serial:
		return CertPrevious
	}
	return CertRefused
}

// ErrCertRefused is the error for a certificate h does not accept.
func ErrCertRefused(h *api.Host, serial string) error {
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
func (e *Service) currentHost(ctx context.Context, id, serial string) (*api.Host, CertMatch, error) {
	if o, ok := e.st.Cache.Get(api.KindHost, id); ok {
		if h := o.(*api.Host); MatchCert(h, serial) != CertRefused {
			return h, MatchCert(h, serial), nil
		}
	}
	o, err := e.st.Store.Get(ctx, api.KindHost, id)
	if errors.Is(err, api.ErrNotFound) {
		return nil, CertRefused, api.Errorf(api.ErrForbidden, "host %s was removed from the inventory and its certificate is no longer accepted; join again with a new token", id)
	}
	if err != nil {
		return nil, CertRefused, fmt.Errorf("look up host %s: %w", id, err)
	}
	h := o.(*api.Host)
	return h, MatchCert(h, serial), nil
}

// PeerIsCurrent checks, when the server calls an agent, that the agent's
// serving certificate is its host's current one.
func (e *Service) PeerIsCurrent(hostID string, cert *x509.Certificate) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, m, err := e.currentHost(ctx, hostID, pki.Serial(cert))
	if err == nil && m == CertRefused {
		err = ErrCertRefused(h, pki.Serial(cert))
	}
	return err
}

// changeHost writes a change to a host together with its (finished) task,
// starting again from the stored host when a heartbeat or another writer
// got in between. fn may add writes to the transaction.
func (e *Service) changeHost(ctx context.Context, id string, t *api.Task, fn func(*api.Host, *store.Txn) error) (*api.Host, error) {
	var upd *api.Host
	fresh, raced := false, false
	err := retry.Conflicts(ctx, 20, func() error {
		raced = false
		cur, ok := state.Get[*api.Host](e.st, id)
		if !ok || fresh {
			var err error
			if cur, err = state.Read[*api.Host](ctx, e.st, id); err != nil {
				return retry.Stop(err)
			}
		}
		fresh = true
		upd = store.Clone(cur)
		txn := e.st.Store.Txn()
		if err := fn(upd, txn); err != nil {
			return retry.Stop(err)
		}
		txn.Update(cur, upd)
		_, err := e.tasks.Submit(ctx, txn, t)
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

// Authenticate finds the host an agent's client certificate names; it
// must be the host's current certificate.
func (e *Service) Authenticate(ctx context.Context, cert *x509.Certificate) (*api.Host, error) {
	var id string
	ok := false
	if cert != nil {
		id, ok = strings.CutPrefix(cert.Subject.CommonName, pki.HostCNPrefix)
	}
	if !ok {
		return nil, api.Errorf(api.ErrUnauthorized, "agent calls need a host certificate")
	}
	serial := pki.Serial(cert)
	h, m, err := e.currentHost(ctx, id, serial)
	if err != nil {
		return nil, err
	}
	switch m {
	case CertRefused:
		return nil, ErrCertRefused(h, serial)
	case CertCurrent:
		if h.Status.Certificate.Previous == "" {
			netguard.Trust(ctx) // a host: off the per-address limit
			return h, nil
		}
		// The host uses its renewed certificate: the old one is done.
		err = state.UpdateKind(ctx, e.st, nil, api.KindHost, id, func(o api.Object) error {
			c := o.(*api.Host).Status.Certificate
			if c == nil || c.Serial != serial || c.Previous == "" {
				return state.ErrUnchanged
			}
			c.Previous = ""
			return nil
		})
	case CertUntracked:
		// A host that joined before the server kept serials: the first
		// certificate it shows becomes its current one (and, being long
		// lived, is renewed at once: see RenewCertificate).
		err = state.UpdateKind(ctx, e.st, nil, api.KindHost, id, func(o api.Object) error {
			h := o.(*api.Host)
			switch MatchCert(h, serial) {
			case CertRefused:
				return ErrCertRefused(h, serial)
			case CertCurrent, CertPrevious:
				return state.ErrUnchanged
			}
			h.Status.Certificate = &api.HostCertificate{Serial: serial, Issued: cert.NotBefore.UTC(), NotAfter: cert.NotAfter.UTC()}
			e.log.Warn("recording the certificate of a host that joined before certificates were tracked", "host", h.Metadata.Name, "serial", serial)
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("record the certificate of host %s: %w", h.Metadata.Name, err)
	}
	// A host's connections do not count against the per-address limit.
	netguard.Trust(ctx)
	return h, nil
}
