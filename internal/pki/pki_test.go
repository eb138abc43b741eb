package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestCSRIdentityComesFromCA(t *testing.T) {
	ca, _, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	key, csr, err := NewKeyAndCSR("vdc-server") // a host claiming to be a server
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := ca.SignCSR(csr, Names{CN: HostCNPrefix + "h1", DNS: []string{HostDNSName("h1")}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(pair.Certificate[0])
	if cert.Subject.CommonName != "host:h1" {
		t.Fatalf("CN from CSR leaked into the certificate: %q", cert.Subject.CommonName)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: HostDNSName("h1"), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	other, _, _ := NewCA("other")
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool()}); err == nil {
		t.Fatal("certificate verified against a foreign CA")
	}
}

func TestSignCSRRejectsGarbage(t *testing.T) {
	ca, _, _ := NewCA("test")
	if _, err := ca.SignCSR([]byte("not pem"), Names{CN: "x"}, time.Hour); err == nil {
		t.Fatal("signed garbage")
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}})
	if _, err := ca.SignCSR(bad, Names{CN: "x"}, time.Hour); err == nil {
		t.Fatal("signed a corrupt CSR")
	}
}
