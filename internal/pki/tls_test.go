package pki

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCipherSuitesAreAEADWithForwardSecrecy(t *testing.T) {
	for _, id := range CipherSuites {
		name := tls.CipherSuiteName(id)
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
			t.Errorf("%s is not an ECDHE AEAD suite", name)
		}
		for _, bad := range tls.InsecureCipherSuites() {
			if bad.ID == id {
				t.Errorf("%s is insecure", name)
			}
		}
	}
}

// handshake runs a TLS handshake between a hardened server and client.
func handshake(t *testing.T, client *tls.Config) error {
	t.Helper()
	ca, _, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(Names{CN: ServerCN, DNS: []string{"localhost"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(a, Harden(&tls.Config{Certificates: []tls.Certificate{cert}}))
	go func() { _ = srv.Handshake(); a.Close() }()
	client.RootCAs, client.ServerName = ca.Pool(), "localhost"
	return tls.Client(b, client).Handshake()
}

func TestHardenedServerRefusesCBC(t *testing.T) {
	cbc := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
	if err := handshake(t, cbc); err == nil {
		t.Fatal("a client offering only ECDHE-ECDSA-AES128-CBC-SHA completed a handshake")
	}
	old := &tls.Config{MaxVersion: tls.VersionTLS11}
	if err := handshake(t, old); err == nil {
		t.Fatal("a TLS 1.1 client completed a handshake")
	}
	if err := handshake(t, Harden(&tls.Config{MaxVersion: tls.VersionTLS12})); err != nil {
		t.Fatalf("a hardened TLS 1.2 client: %v", err)
	}
	if err := handshake(t, Harden(&tls.Config{})); err != nil {
		t.Fatalf("a hardened TLS 1.3 client: %v", err)
	}
}
