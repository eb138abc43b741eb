package ovf

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
)

// certFile makes an ovftool-style .cert: the manifest's signature, then
// the signer's certificate.
func certFile(t *testing.T, manifest []byte) []byte {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Example Publisher"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	h := sha256.Sum256(manifest)
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, h[:])
	must(t, err)
	return []byte("SHA256(vm.mf)= " + hex.EncodeToString(sig) + "\n" + string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

func TestCertificate(t *testing.T) {
	mf := []byte("SHA256(vm.ovf)= " + strings.Repeat("ab", 32) + "\n")
	cert := certFile(t, mf)
	s, err := VerifyCertificate(cert, mf, "vm.mf")
	if err != nil || !strings.Contains(s.Subject, "Example Publisher") || !s.SelfSigned {
		t.Fatalf("a good signature: %+v %v", s, err)
	}
	changed := []byte("SHA256(vm.ovf)= " + strings.Repeat("cd", 32) + "\n")
	if _, err := VerifyCertificate(cert, changed, "vm.mf"); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a changed manifest: %v", err)
	}
	if _, err := VerifyCertificate(cert, mf, "other.mf"); err == nil || !strings.Contains(err.Error(), "not the manifest") {
		t.Errorf("a signature of another file: %v", err)
	}
	if _, err := VerifyCertificate([]byte("garbage"), mf, "vm.mf"); err == nil {
		t.Error("garbage accepted as a certificate")
	}
}
