package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/atomicfile"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
)

// A host's certificate is short-lived (the server's --host-cert-ttl, 30
// days by default): the agent renews it past two thirds of its life,
// through POST /api/v1/agent/renew with its current one, and switches at
// once, without a restart: its API listener, its client to the server and
// the files QEMU reads for migration TLS. The agent makes its calls to the
// server one at a time, from the heartbeat loop, so none is in flight with
// the old certificate when it switches; the server accepts the old one
// until the new one is first used, so a renewal whose answer was lost is
// simply tried again.

// tlsState is the host's TLS material; it is replaced whole.
type tlsState struct {
	cert   *tls.Certificate // Leaf set
	caPEM  []byte
	pool   *x509.CertPool
	listen *tls.Config // for the agent API
}

func (a *Agent) certificate() *tls.Certificate { return a.tls.Load().cert }

// newServerClient is the agent's client to the server: it presents the
// current certificate on every new connection.
func (a *Agent) newServerClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: pki.Harden(&tls.Config{RootCAs: a.tls.Load().pool,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return a.certificate(), nil }}),
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     netguard.ClientIdleTimeout,
	}}
}

// listenTLS is the agent API's TLS configuration: whatever is current
// when a connection comes in.
func (a *Agent) listenTLS() *tls.Config {
	return pki.Harden(&tls.Config{
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return a.tls.Load().listen, nil },
	})
}

// loadTLS reads the host's key, certificate and CA from its data dir,
// first finishing a save that a crash cut short.
func (a *Agent) loadTLS() error {
	if err := a.promoteNext(); err != nil {
		return fmt.Errorf("finish saving the host certificate: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(a.pkiPath("cert.pem"), a.pkiPath("key.pem"))
	if err != nil {
		return fmt.Errorf("load host certificate: %w", err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("load host certificate: %w", err)
		}
	}
	caPEM, err := os.ReadFile(a.pkiPath("ca.pem"))
	if err != nil {
		return fmt.Errorf("load CA: %w", err)
	}
	pool, err := pki.PoolFromPEM(caPEM)
	if err != nil {
		return fmt.Errorf("load CA: %w", err)
	}
	st := &tlsState{cert: &cert, caPEM: caPEM, pool: pool}
	st.listen = pki.Harden(&tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return st.cert, nil },
		ClientCAs:      pool,
		ClientAuth:     tls.RequireAndVerifyClientCert,
	})
	a.tls.Store(st)
	return nil
}

// saveCert writes a new key and certificate so that a crash at any point
// leaves a pair that matches: both go to *-next.pem first, then over the
// current files, key first; loadTLS completes what a crash interrupted.
func (a *Agent) saveCert(keyPEM, certPEM, caPEM []byte) error {
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return fmt.Errorf("the certificate the server sent does not match the key: %w", err)
	}
	if err := os.MkdirAll(a.pkiPath(""), 0o700); err != nil {
		return err
	}
	for f, b := range map[string][]byte{"ca.pem": caPEM, "key-next.pem": keyPEM} {
		if err := atomicfile.WriteFile(a.pkiPath(f), b, 0o600); err != nil {
			return fmt.Errorf("save host certificate: %w", err)
		}
	}
	// cert-next.pem last: its presence means the new pair is complete.
	if err := atomicfile.WriteFile(a.pkiPath("cert-next.pem"), certPEM, 0o600); err != nil {
		return fmt.Errorf("save host certificate: %w", err)
	}
	return a.promoteNext()
}

// promoteNext moves a complete new pair (saveCert) over the current one.
func (a *Agent) promoteNext() error {
	key, cert := a.pkiPath("key.pem"), a.pkiPath("cert.pem")
	keyNext, certNext := a.pkiPath("key-next.pem"), a.pkiPath("cert-next.pem")
	if _, err := os.Stat(certNext); errors.Is(err, os.ErrNotExist) {
		_ = os.Remove(keyNext) // the new pair was never complete
		return nil
	}
	switch {
	case pairMatches(certNext, keyNext):
		if err := os.Rename(keyNext, key); err != nil {
			return err
		}
		if err := os.Rename(certNext, cert); err != nil {
			return err
		}
	case pairMatches(certNext, key): // the key had been moved already
		if err := os.Rename(certNext, cert); err != nil {
			return err
		}
	default:
		_ = os.Remove(keyNext)
		_ = os.Remove(certNext)
		return nil
	}
	return syncDir(a.pkiPath(""))
}

func pairMatches(certFile, keyFile string) bool {
	_, err := tls.LoadX509KeyPair(certFile, keyFile)
	return err == nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// adoptCert saves a new certificate and switches to it at once.
func (a *Agent) adoptCert(keyPEM, certPEM, caPEM []byte) error {
	if err := a.saveCert(keyPEM, certPEM, caPEM); err != nil {
		return err
	}
	return a.switchTLS()
}

// switchTLS loads the certificate just saved and puts it to use: new
// connections to the agent API get it at once; connections to the server
// keep the certificate they were opened with, so they are dropped (none is
// busy, see above); QEMU gets its copy for the next migration.
func (a *Agent) switchTLS() error {
	old := a.tls.Load()
	if err := a.loadTLS(); err != nil {
		return err
	}
	if err := a.writeQEMUTLS(); err != nil {
		return fmt.Errorf("lay out the new host certificate for QEMU: %w", err)
	}
	if old == nil || !bytes.Equal(old.caPEM, a.tls.Load().caPEM) {
		a.hc = a.newServerClient() // its roots are fixed
	} else if t, ok := a.hc.Transport.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// renewDue is when a certificate should be renewed: past two thirds of
// its life.
func renewDue(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// refused says whether the server turned the host's certificate down (it
// was revoked or renewed away), as opposed to failing.
func refused(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == http.StatusUnauthorized
}

// removed says whether the server no longer knows the host.
func removed(err error) bool {
	var ae *api.Error
	return errors.As(err, &ae) && ae.Status == http.StatusForbidden
}

// hostRemoved tells of a host the server no longer has (`vdc host
// remove`). The agent does not join again on its own, even with a token:
// the host was taken out on purpose.
func (a *Agent) hostRemoved(why error) {
	cc := &a.certs
	cc.refusals++
	if cc.refusals == 1 || cc.refusals%30 == 0 {
		a.log.Error(fmt.Sprintf("host %s was removed from the inventory; to bring this machine back as a new host, stop this agent, "+
			"move its data dir %s away and start it with a new join token", a.cfg.Name, a.cfg.DataDir), "why", why, "times", cc.refusals)
	}
}

// renew trades the current certificate for a new one.
func (a *Agent) renew(ctx context.Context) error {
	keyPEM, csrPEM, err := pki.NewKeyAndCSR(a.cfg.Name)
	if err != nil {
		return fmt.Errorf("renew certificate of host %q: %w", a.cfg.Name, err)
	}
	var rr api.RenewResponse
	if err := a.post(ctx, "/api/v1/agent/renew", api.RenewRequest{CSR: string(csrPEM)}, &rr); err != nil {
		return fmt.Errorf("renew certificate of host %q: %w", a.cfg.Name, err)
	}
	if err := a.adoptCert(keyPEM, []byte(rr.Certificate), []byte(rr.CA)); err != nil {
		return fmt.Errorf("renew certificate of host %q: %w", a.cfg.Name, err)
	}
	leaf := a.certificate().Leaf
	a.log.Info("renewed the host certificate", "serial", pki.Serial(leaf), "notAfter", leaf.NotAfter)
	return nil
}

// certCare state, used by the heartbeat loop only.
type certCare struct {
	renewAsked bool      // the server asked for a renewal
	renewedAt  time.Time // last renewal by this process
	retryAt    time.Time // after a failed renewal
	wait       time.Duration
	refusals   int
	rejoinDone bool // a join with the token was refused: do not try again
}

// tendCertificate runs after each heartbeat: it renews the certificate
// when due, and joins again with the join token, if the agent has one,
// when the server refuses the certificate or it has expired.
func (a *Agent) tendCertificate(ctx context.Context, hbErr error) {
	cc := &a.certs
	now := time.Now()
	leaf := a.certificate().Leaf
	switch {
	case removed(hbErr):
		a.hostRemoved(hbErr)
		return
	case refused(hbErr):
		a.certRefused(ctx, hbErr)
		return
	case now.After(leaf.NotAfter):
		a.certRefused(ctx, fmt.Errorf("the host certificate expired at %s", leaf.NotAfter.Format(time.RFC3339)))
		return
	case now.Before(cc.retryAt):
		return
	}
	asked := cc.renewAsked && now.Sub(cc.renewedAt) > time.Hour
	if now.Before(renewDue(leaf)) && !asked {
		return
	}
	if err := a.renew(ctx); err != nil {
		if removed(err) {
			a.hostRemoved(err)
			return
		}
		if refused(err) {
			a.certRefused(ctx, err)
			return
		}
		cc.wait = min(max(2*cc.wait, time.Second), 5*time.Minute)
		cc.retryAt = now.Add(cc.wait)
		a.log.Warn("cannot renew the host certificate yet; retrying", "err", err, "in", cc.wait, "expires", leaf.NotAfter)
		return
	}
	cc.wait, cc.retryAt, cc.renewedAt, cc.renewAsked, cc.refusals = 0, time.Time{}, now, false, 0
	a.changed() // the next heartbeat, with the new certificate, retires the old one
}

// certRefused handles a certificate the server will not take: with a join
// token (from `vdc host replace`) the host joins again; without one, only
// a replace can bring it back, which the log says.
func (a *Agent) certRefused(ctx context.Context, why error) {
	cc := &a.certs
	tok, err := a.joinToken()
	if err != nil {
		a.log.Warn("cannot read the join token", "err", err)
	}
	if tok != "" && !cc.rejoinDone {
		a.log.Warn("the server does not accept this host's certificate; joining again with the join token", "why", why)
		err := a.join(ctx, tok)
		if err == nil {
			err = a.switchTLS()
		}
		if err == nil {
			cc.refusals = 0
			a.changed()
			return
		}
		var ae *api.Error
		cc.rejoinDone = errors.As(err, &ae) && ae.Status/100 == 4
		a.log.Error("cannot join again", "err", err)
	}
	cc.refusals++
	if cc.refusals == 1 || cc.refusals%30 == 0 {
		a.log.Error(fmt.Sprintf("the server does not accept this host's certificate, so the host is cut off (its VMs keep running): "+
			"the host must be replaced. Run `vdc host replace %s`, then restart this agent with the token it prints "+
			"(--join-token-file FILE or VDC_JOIN_TOKEN)", a.cfg.Name), "why", why, "times", cc.refusals)
	}
}
