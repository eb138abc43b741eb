package ca_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/control/ca"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
	"github.com/vdc-project/vdc/internal/store/storetest"
)

// member reads the member's files in dir: the CA's certificate and the
// member's certificate, checked to match its key.
func member(t *testing.T, dir string) (caPEM []byte, cert *x509.Certificate, certPEM []byte) {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "etcd.crt"), filepath.Join(dir, "etcd.key"))
	if err != nil {
		t.Fatalf("the member's certificate and key: %v", err)
	}
	certPEM, _ = os.ReadFile(filepath.Join(dir, "etcd.crt"))
	return caPEM, pair.Leaf, certPEM
}

// writeMember puts a member certificate from c valid for ttl in dir.
func writeMember(t *testing.T, dir string, c *pki.CA, ttl time.Duration) []byte {
	t.Helper()
	certPEM, keyPEM, err := c.Issue(pki.Names{CN: pki.ServerCN, DNS: []string{"localhost"}}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteSecretFile(filepath.Join(dir, "etcd.key"), keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := pki.WritePublicFile(filepath.Join(dir, "etcd.crt"), certPEM); err != nil {
		t.Fatal(err)
	}
	return certPEM
}

// A running server keeps the member's certificate: one with more than a
// third of its life left is kept as it is; one with less, or from another
// CA, is replaced at the next check by a full-life certificate from the
// datacenter CA, the old one staying in place until then.
func TestMemberCertRenewedNearExpiry(t *testing.T) {
	e := storetest.Start(t)
	dir := t.TempDir()
	a := ca.New(dir, quiet())
	c, err := a.Load(context.Background(), e.Client)
	if err != nil {
		t.Fatal(err)
	}
	tick, checked := ca.DriveMemberChecks(a)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := a.KeepMemberCert(ctx); err != nil {
		t.Fatal(err)
	}
	caPEM, cert, _ := member(t, dir)
	if !bytes.Equal(caPEM, c.CertPEM) || cert.CheckSignatureFrom(c.Cert) != nil || cert.Subject.CommonName != pki.ServerCN {
		t.Fatalf("first member certificate: CA file matches %v, CN %q, from the CA: %v", bytes.Equal(caPEM, c.CertPEM), cert.Subject.CommonName, cert.CheckSignatureFrom(c.Cert))
	}
	check := func() {
		t.Helper()
		tick <- time.Now()
		if err := <-checked; err != nil {
			t.Fatal(err)
		}
	}
	renewed := func(old []byte) {
		t.Helper()
		caPEM, cert, certPEM := member(t, dir)
		if bytes.Equal(certPEM, old) {
			t.Fatal("the member's certificate was not renewed")
		}
		if !bytes.Equal(caPEM, c.CertPEM) || cert.CheckSignatureFrom(c.Cert) != nil || time.Until(cert.NotAfter) < ca.MemberCertTTL-time.Hour {
			t.Fatalf("renewed certificate: from the CA %v, valid until %v", cert.CheckSignatureFrom(c.Cert), cert.NotAfter)
		}
	}

	for _, tc := range []struct {
		name   string
		from   *pki.CA
		left   time.Duration
		renews bool
	}{
		{"just over a third left", c, ca.MemberCertTTL/3 + 24*time.Hour, false},
		{"just under a third left", c, ca.MemberCertTTL/3 - 24*time.Hour, true},
		{"an hour left", c, time.Hour, true},
		{"from another CA", otherCA(t), ca.MemberCertTTL, true},
	} {
		old := writeMember(t, dir, tc.from, tc.left)
		if _, _, now := member(t, dir); !bytes.Equal(now, old) {
			t.Fatalf("%s: the old certificate was replaced before a check", tc.name)
		}
		check()
		if tc.renews {
			renewed(old)
		} else if _, _, now := member(t, dir); !bytes.Equal(now, old) {
			t.Fatalf("%s: a certificate not due was replaced", tc.name)
		}
	}
}

func otherCA(t *testing.T) *pki.CA {
	c, _ := newCA(t)
	return c
}

// On a first start the member's TLS files come from a new CA, which Load
// stores; the member serves mutual TLS with them; a restart keeps them.
func TestOpenEmbeddedFirstStart(t *testing.T) {
	dir := t.TempDir()
	pkiDir, etcdDir := filepath.Join(dir, "pki"), filepath.Join(dir, "etcd")
	ctx := context.Background()
	a := ca.New(pkiDir, quiet())
	e, err := a.OpenEmbedded(ctx, etcdDir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	caPEM, cert, certPEM := member(t, pkiDir)
	c, err := a.Load(ctx, e.Client)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(caPEM, c.CertPEM) || cert.CheckSignatureFrom(c.Cert) != nil {
		t.Fatal("the stored CA is not the one the member's certificate is from")
	}
	url := e.ClientURL()
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("member client URL %q, want https on loopback", url)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "etcd.crt"), filepath.Join(pkiDir, "etcd.key"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: c.Pool(), Certificates: []tls.Certificate{pair}, ServerName: "localhost", MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to the member with its own certificate: %v", err)
	}
	conn.Close()
	e.Close()

	b := ca.New(pkiDir, quiet())
	e2, err := b.OpenEmbedded(ctx, etcdDir)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if _, _, again := member(t, pkiDir); !bytes.Equal(again, certPEM) {
		t.Fatal("a restart replaced the member's certificate")
	}
	if c2, err := b.Load(ctx, e2.Client); err != nil || c2.Fingerprint() != c.Fingerprint() {
		t.Fatalf("after a restart: %v, or another CA", err)
	}
}

// A data dir from before TLS (CA key in clear in the store, no TLS files)
// gets member files from its own CA, whose key Load then seals.
func TestOpenEmbeddedFromBeforeTLS(t *testing.T) {
	dir := t.TempDir()
	pkiDir, etcdDir := filepath.Join(dir, "pki"), filepath.Join(dir, "etcd")
	ctx := context.Background()
	old, keyPEM := newCA(t)
	legacy, err := store.StartEmbedded(ctx, store.EmbeddedOptions{Dir: etcdDir})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(record{Cert: string(old.CertPEM), Key: string(keyPEM)})
	if _, err := legacy.Client.Put(ctx, ca.Key, string(b)); err != nil {
		t.Fatal(err)
	}
	legacy.Close()

	a := ca.New(pkiDir, quiet())
	e, err := a.OpenEmbedded(ctx, etcdDir)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if caPEM, cert, _ := member(t, pkiDir); !bytes.Equal(caPEM, old.CertPEM) || cert.CheckSignatureFrom(old.Cert) != nil {
		t.Fatal("the member's files are not from the data dir's CA")
	}
	c, err := a.Load(ctx, e.Client)
	if err != nil || c.Fingerprint() != old.Fingerprint() {
		t.Fatalf("load after the upgrade: %v, or another CA", err)
	}
	if _, rec, _ := raw(t, e.Client); rec.Key != "" || rec.SealedKey == "" {
		t.Fatal("the clear key was not sealed")
	}
}
