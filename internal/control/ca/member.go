package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

// The embedded etcd member serves clients and peers only over mutual TLS,
// with certificates from the datacenter CA whose common name is
// vdc-server: a host's certificate (host:ID) is refused, as is a client
// with none. The server itself talks to the member in process.

// MemberCertTTL is the life of the member's certificate; it is renewed
// when a third of it is left.
const MemberCertTTL = 365 * 24 * time.Hour

// memberCheckEvery is how often a running server checks the member's
// certificate.
const memberCheckEvery = 12 * time.Hour

// servingCertTTL is the life of the server's API certificate, issued at
// every start.
const servingCertTTL = 365 * 24 * time.Hour

func (a *Authority) caCert() string     { return filepath.Join(a.dir, "ca.crt") }
func (a *Authority) memberCert() string { return filepath.Join(a.dir, "etcd.crt") }
func (a *Authority) memberKey() string  { return filepath.Join(a.dir, "etcd.key") }

// MemberTLS names the member's TLS files.
func (a *Authority) MemberTLS() *store.MemberTLS {
	return &store.MemberTLS{CAFile: a.caCert(), CertFile: a.memberCert(), KeyFile: a.memberKey(), AllowedCNs: []string{pki.ServerCN}}
}

// haveMember says whether the member's TLS files are all there.
func (a *Authority) haveMember() bool {
	for _, p := range []string{a.caCert(), a.memberCert(), a.memberKey()} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// OpenEmbedded starts the embedded member in etcdDir with mutual TLS. The
// member's certificate needs the CA, which lives in the member: on a first
// start the CA is made here (and stored by Load); a data dir from before
// TLS is opened once with no listener at all to read its CA.
func (a *Authority) OpenEmbedded(ctx context.Context, etcdDir string) (*store.Embedded, error) {
	if !a.haveMember() {
		if err := a.firstMember(ctx, etcdDir); err != nil {
			return nil, err
		}
	}
	return store.StartEmbedded(ctx, store.EmbeddedOptions{Dir: etcdDir, TLS: a.MemberTLS()})
}

// firstMember writes the member's TLS files when there are none: from the
// CA in a data dir from before TLS, or from a new CA.
func (a *Authority) firstMember(ctx context.Context, etcdDir string) error {
	var c *pki.CA
	if _, err := os.Stat(filepath.Join(etcdDir, "member-data")); err == nil {
		e, err := store.StartEmbedded(ctx, store.EmbeddedOptions{Dir: etcdDir})
		if err != nil {
			return err
		}
		c, err = a.read(ctx, e.Client)
		e.Close()
		if err != nil {
			return err
		}
	}
	if c == nil {
		f, err := newFresh()
		if err != nil {
			return err
		}
		c, a.fresh = f.ca, f
	}
	return a.renewMember(c, true)
}

// KeepMemberCert renews the member's certificate now if it is due, then
// checks it every 12 hours until ctx ends. Load comes first.
func (a *Authority) KeepMemberCert(ctx context.Context) error {
	if a.ca == nil {
		return errors.New("renew the embedded etcd's certificate: the datacenter CA is not loaded")
	}
	if err := a.renewMember(a.ca, false); err != nil {
		return err
	}
	go a.keepMember(ctx)
	return nil
}

func (a *Authority) keepMember(ctx context.Context) {
	tick := a.tick
	if tick == nil {
		t := time.NewTicker(memberCheckEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			err := a.renewMember(a.ca, false)
			if err != nil {
				a.log.Error("renew the embedded etcd's certificate", "err", err)
			}
			if a.checked != nil {
				a.checked(err)
			}
		}
	}
}

// renewMember writes the CA's certificate and a member certificate signed
// by it when force is set, when they are missing or from another CA, or
// when a third of the certificate's life is left. etcd reads the files at
// every handshake: a running member picks them up.
func (a *Authority) renewMember(c *pki.CA, force bool) error {
	if !force && a.memberCurrent(c) {
		return nil
	}
	dns, ips := pki.LocalNames()
	certPEM, keyPEM, err := c.Issue(pki.Names{CN: pki.ServerCN, DNS: dns, IPs: ips}, MemberCertTTL)
	if err != nil {
		return fmt.Errorf("issue the embedded etcd's certificate: %w", err)
	}
	if err := pki.WritePublicFile(a.caCert(), c.CertPEM); err != nil {
		return fmt.Errorf("write %s: %w", a.caCert(), err)
	}
	if err := pki.WriteSecretFile(a.memberKey(), keyPEM); err != nil {
		return fmt.Errorf("write %s: %w", a.memberKey(), err)
	}
	if err := pki.WritePublicFile(a.memberCert(), certPEM); err != nil {
		return fmt.Errorf("write %s: %w", a.memberCert(), err)
	}
	return nil
}

// memberCurrent says whether the member's files hold c and a certificate
// from c with more than a third of its life left.
func (a *Authority) memberCurrent(c *pki.CA) bool {
	caPEM, err1 := os.ReadFile(a.caCert())
	certPEM, err2 := os.ReadFile(a.memberCert())
	if err1 != nil || err2 != nil || !bytes.Equal(caPEM, c.CertPEM) {
		return false
	}
	cert, err := pki.ParseCertPEM(certPEM)
	return err == nil && cert.CheckSignatureFrom(c.Cert) == nil && time.Until(cert.NotAfter) > MemberCertTTL/3
}

// ServingCert issues the server's API certificate (CN vdc-server) for
// this machine's names and names. Its chain includes the CA so that a
// joining host can find the CA its token pins. Load comes first.
func (a *Authority) ServingCert(names ...string) (tls.Certificate, error) {
	if a.ca == nil {
		return tls.Certificate{}, errors.New("issue the server's certificate: the datacenter CA is not loaded")
	}
	dns, ips := pki.LocalNames(names...)
	certPEM, key, err := a.ca.Issue(pki.Names{CN: pki.ServerCN, DNS: dns, IPs: ips}, servingCertTTL)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(append(certPEM, a.ca.CertPEM...), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load server certificate: %w", err)
	}
	return cert, nil
}
