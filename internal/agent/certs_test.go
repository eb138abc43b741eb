package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/pki"
)

// pair issues a key and certificate for host h1.
func pair(t *testing.T, ca *pki.CA) (keyPEM, certPEM []byte) {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(pki.Names{CN: pki.HostCNPrefix + "h1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return keyPEM, certPEM
}

// A crash anywhere in saving a renewed certificate leaves the agent a
// key and certificate that match: the old pair or the new one.
func TestSavedCertificateSurvivesACrashAtEveryStep(t *testing.T) {
	ca, _, err := pki.NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	oldKey, oldCert := pair(t, ca)
	newKey, newCert := pair(t, ca)
	steps := []struct {
		name  string
		files map[string][]byte // on disk when the agent starts again
		want  []byte            // the certificate it must load
	}{
		{"nothing written", map[string][]byte{}, oldCert},
		{"new key only", map[string][]byte{"key-next.pem": newKey}, oldCert},
		{"new pair written", map[string][]byte{"key-next.pem": newKey, "cert-next.pem": newCert}, newCert},
		{"key moved", map[string][]byte{"key.pem": newKey, "cert-next.pem": newCert}, newCert},
		{"a stray certificate", map[string][]byte{"cert-next.pem": newCert}, oldCert},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			a := &Agent{cfg: Config{DataDir: t.TempDir()}}
			files := map[string][]byte{"key.pem": oldKey, "cert.pem": oldCert, "ca.pem": ca.CertPEM}
			for f, b := range st.files {
				files[f] = b
			}
			if err := os.MkdirAll(a.pkiPath(""), 0o700); err != nil {
				t.Fatal(err)
			}
			for f, b := range files {
				if err := os.WriteFile(a.pkiPath(f), b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := a.loadTLS(); err != nil {
				t.Fatalf("load after a crash: %v", err)
			}
			want, _ := pki.ParseCertPEM(st.want)
			if got := a.certificate().Leaf; pki.Serial(got) != pki.Serial(want) {
				t.Fatalf("loaded certificate %s, want %s", pki.Serial(got), pki.Serial(want))
			}
			for _, f := range []string{"key-next.pem", "cert-next.pem"} {
				if _, err := os.Stat(a.pkiPath(f)); err == nil {
					t.Errorf("%s left behind", f)
				}
			}
		})
	}
	// And the ordinary save.
	a := &Agent{cfg: Config{DataDir: t.TempDir()}}
	if err := a.saveCert(oldKey, oldCert, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	if err := a.saveCert(newKey, oldCert, ca.CertPEM); err == nil {
		t.Fatal("saved a certificate that does not match its key")
	}
	if err := a.saveCert(newKey, newCert, ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	if err := a.loadTLS(); err != nil {
		t.Fatal(err)
	}
	want, _ := pki.ParseCertPEM(newCert)
	if pki.Serial(a.certificate().Leaf) != pki.Serial(want) {
		t.Fatal("the saved certificate is not the one loaded")
	}
	for _, f := range []string{"key.pem", "cert.pem"} {
		if fi, err := os.Stat(filepath.Join(a.cfg.DataDir, "pki", f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi.Mode(), err)
		}
	}
}

func TestRenewalIsDuePastTwoThirds(t *testing.T) {
	ca, _, _ := pki.NewCA("test")
	certPEM, _, err := ca.Issue(pki.Names{CN: "x"}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := pki.ParseCertPEM(certPEM)
	due := renewDue(c)
	if d := time.Until(due); d < 19*24*time.Hour || d > 20*24*time.Hour {
		t.Fatalf("a 30-day certificate is due for renewal in %s", d)
	}
	short, _, _ := ca.Issue(pki.Names{CN: "x"}, 9*time.Second)
	s, _ := pki.ParseCertPEM(short)
	if d := time.Until(renewDue(s)); d < 4*time.Second || d > 7*time.Second {
		t.Fatalf("a 9s certificate is due for renewal in %s", d)
	}
}

func TestJoinTokenIsReadFromItsFileWhenNeeded(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	a := &Agent{cfg: Config{JoinTokenFile: f}}
	if _, err := a.joinToken(); err == nil {
		t.Fatal("a missing token file is an error once the token is needed")
	}
	if err := os.WriteFile(f, []byte("vdc1.s.f\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := a.joinToken(); err != nil || tok != "vdc1.s.f" {
		t.Fatalf("token %q, %v", tok, err)
	}
}
