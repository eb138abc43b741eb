package ca_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/internal/control/ca"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store/storetest"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// record is the CA's record in the store, as etcd holds it.
type record struct {
	Cert      string `json:"cert"`
	Key       string `json:"key"`
	SealedKey string `json:"sealedKey"`
	SealKeyID string `json:"sealKeyID"`
}

// raw reads the CA's record straight from etcd.
func raw(t *testing.T, cli *clientv3.Client) (string, record, int64) {
	t.Helper()
	r, err := cli.Get(context.Background(), ca.Key)
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("read %s from etcd: %v (%d keys)", ca.Key, err, len(r.Kvs))
	}
	var rec record
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
		t.Fatalf("the CA record is not JSON: %v", err)
	}
	return string(r.Kvs[0].Value), rec, r.Kvs[0].ModRevision
}

// keyBody is the base64 of a PEM key, as it would appear if stored.
func keyBody(t *testing.T, keyPEM []byte) string {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatal("not a PEM key")
	}
	return base64.StdEncoding.EncodeToString(b.Bytes)
}

func newCA(t *testing.T) (*pki.CA, []byte) {
	t.Helper()
	c, keyPEM, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return c, keyPEM
}

// The CA's key is in the store only sealed with the server's seal key:
// neither the PEM key nor its bytes are in etcd's value, and the sealed
// key opens with seal.key to the CA's key.
func TestCAKeyIsSealedInTheStore(t *testing.T) {
	e := storetest.Start(t)
	dir := t.TempDir()
	a := ca.New(dir, quiet())
	made, keyPEM := newCA(t)
	ca.SetFresh(a, made, keyPEM)
	c, err := a.Load(context.Background(), e.Client)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fingerprint() != made.Fingerprint() || a.CA() != c {
		t.Fatalf("Load gave CA %s, want the one made for the member, %s", c.Fingerprint(), made.Fingerprint())
	}
	val, rec, _ := raw(t, e.Client)
	if strings.Contains(val, "PRIVATE KEY") || strings.Contains(val, keyBody(t, keyPEM)[:40]) {
		t.Fatalf("the CA's key is in the store in clear: %s", val)
	}
	if rec.Key != "" || rec.SealedKey == "" || rec.Cert != string(made.CertPEM) {
		t.Fatalf("CA record: key in clear %q, sealed %v, same cert %v", rec.Key, rec.SealedKey != "", rec.Cert == string(made.CertPEM))
	}
	fi, err := os.Stat(filepath.Join(dir, "seal.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("seal.key: %v, want mode 0600", err)
	}
	seal, err := pki.LoadSealKey(a.SealKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if rec.SealKeyID != seal.ID() {
		t.Fatalf("record names seal key %s, the server's is %s", rec.SealKeyID, seal.ID())
	}
	opened, err := seal.Open(rec.SealedKey, []byte(rec.Cert))
	if err != nil || string(opened) != string(keyPEM) {
		t.Fatalf("the sealed key does not open to the CA's key (%v)", err)
	}
}

// A server without the seal key, or with another one, cannot open the CA,
// says which file it needs, and leaves the stored CA alone.
func TestLoadWithoutTheSealKeyFails(t *testing.T) {
	e := storetest.Start(t)
	ctx := context.Background()
	if _, err := ca.New(t.TempDir(), quiet()).Load(ctx, e.Client); err != nil {
		t.Fatal(err)
	}
	before, _, rev := raw(t, e.Client)

	dir := t.TempDir()
	_, err := ca.New(dir, quiet()).Load(ctx, e.Client)
	want := "has no " + filepath.Join(dir, "seal.key") + ": copy that file from a server of this datacenter"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("load without seal.key: %v, want an error containing %q", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "seal.key")); !os.IsNotExist(err) {
		t.Fatalf("loading the CA made a seal key of its own (%v)", err)
	}

	other := t.TempDir()
	if _, err := pki.LoadOrCreateSealKey(filepath.Join(other, "seal.key")); err != nil {
		t.Fatal(err)
	}
	_, err = ca.New(other, quiet()).Load(ctx, e.Client)
	if err == nil || !strings.Contains(err.Error(), "not with this server's "+filepath.Join(other, "seal.key")) {
		t.Fatalf("load with another seal key: %v, want it to name the wrong key", err)
	}
	if after, _, rev2 := raw(t, e.Client); after != before || rev2 != rev {
		t.Fatal("a server that could not open the CA rewrote its record")
	}
}

// Loading again, after a restart, on a second server with the same seal
// key, or with a new CA of its own at hand, gives the stored CA, which is
// not rewritten.
func TestSecondLoadReturnsTheSameCA(t *testing.T) {
	e := storetest.Start(t)
	ctx := context.Background()
	dir := t.TempDir()
	a := ca.New(dir, quiet())
	first, err := a.Load(ctx, e.Client)
	if err != nil {
		t.Fatal(err)
	}
	_, _, rev := raw(t, e.Client)

	second := t.TempDir()
	sealKey, err := os.ReadFile(filepath.Join(dir, "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteSecretFile(filepath.Join(second, "seal.key"), sealKey); err != nil {
		t.Fatal(err)
	}
	racer := ca.New(second, quiet())
	made, keyPEM := newCA(t)
	ca.SetFresh(racer, made, keyPEM) // as if it had started a member of its own
	for name, b := range map[string]*ca.Authority{"again": a, "restarted": ca.New(dir, quiet()), "second server": racer} {
		got, err := b.Load(ctx, e.Client)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Fingerprint() != first.Fingerprint() || string(got.CertPEM) != string(first.CertPEM) {
			t.Fatalf("%s: CA %s, want the stored %s", name, got.Fingerprint(), first.Fingerprint())
		}
	}
	if _, _, rev2 := raw(t, e.Client); rev2 != rev {
		t.Fatalf("the CA record was rewritten (revision %d, was %d)", rev2, rev)
	}
}

// A record an older server wrote with the key in clear gives its CA, and
// is sealed in place.
func TestClearKeyFromAnOlderServerIsSealedInPlace(t *testing.T) {
	e := storetest.Start(t)
	ctx := context.Background()
	old, keyPEM := newCA(t)
	b, _ := json.Marshal(record{Cert: string(old.CertPEM), Key: string(keyPEM)})
	if _, err := e.Client.Put(ctx, ca.Key, string(b)); err != nil {
		t.Fatal(err)
	}
	a := ca.New(t.TempDir(), quiet())
	c, err := a.Load(ctx, e.Client)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fingerprint() != old.Fingerprint() {
		t.Fatal("the older server's CA was not kept")
	}
	val, rec, _ := raw(t, e.Client)
	if strings.Contains(val, "PRIVATE KEY") || strings.Contains(val, keyBody(t, keyPEM)[:40]) || rec.SealedKey == "" || rec.Cert != string(old.CertPEM) {
		t.Fatalf("the clear key was not sealed in place: %s", val)
	}
	if again, err := ca.New(filepath.Dir(a.SealKeyPath()), quiet()).Load(ctx, e.Client); err != nil || again.Fingerprint() != old.Fingerprint() {
		t.Fatalf("reload of the sealed record: %v", err)
	}
}

// ServingCert is the API's certificate: CN vdc-server, this machine's
// names and the extra ones, its chain ending with the CA.
func TestServingCert(t *testing.T) {
	e := storetest.Start(t)
	a := ca.New(t.TempDir(), quiet())
	if _, err := a.ServingCert(); err == nil {
		t.Fatal("a serving certificate before the CA is loaded")
	}
	c, err := a.Load(context.Background(), e.Client)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.ServingCert("api.example.org", "192.0.2.7")
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 || string(cert.Certificate[1]) != string(c.Cert.Raw) {
		t.Fatalf("chain of %d certificates, want the leaf and the CA", len(cert.Certificate))
	}
	leaf, err := pki.ParseCertPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}))
	if err != nil {
		t.Fatal(err)
	}
	if leaf.Subject.CommonName != pki.ServerCN || leaf.CheckSignatureFrom(c.Cert) != nil {
		t.Fatalf("leaf %q, signed by the CA: %v", leaf.Subject.CommonName, leaf.CheckSignatureFrom(c.Cert))
	}
	if leaf.VerifyHostname("api.example.org") != nil || leaf.VerifyHostname("192.0.2.7") != nil || leaf.VerifyHostname("localhost") != nil {
		t.Fatalf("names %v %v, want localhost, api.example.org and 192.0.2.7", leaf.DNSNames, leaf.IPAddresses)
	}
}

// Servers of one datacenter starting at once on an empty store (same seal
// key, each with a CA of its own at hand) agree on one CA: the first
// stored.
func TestRacingServersAgreeOnOneCA(t *testing.T) {
	e := storetest.Start(t)
	sealKey := filepath.Join(t.TempDir(), "seal.key")
	if _, err := pki.LoadOrCreateSealKey(sealKey); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(sealKey)
	const n = 8
	got := make(chan string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		dir := t.TempDir()
		if err := pki.WriteSecretFile(filepath.Join(dir, "seal.key"), b); err != nil {
			t.Fatal(err)
		}
		a := ca.New(dir, quiet())
		made, keyPEM := newCA(t)
		ca.SetFresh(a, made, keyPEM)
		go func() {
			<-start
			c, err := a.Load(context.Background(), e.Client)
			if err != nil {
				got <- "error: " + err.Error()
				return
			}
			got <- c.Fingerprint()
		}()
	}
	close(start)
	fps := make([]string, n)
	for i := range fps {
		fps[i] = <-got
	}
	_, rec, _ := raw(t, e.Client)
	stored, err := pki.ParseCertPEM([]byte(rec.Cert))
	if err != nil {
		t.Fatal(err)
	}
	want := pki.Fingerprint(stored.Raw)
	for _, fp := range fps {
		if fp != want {
			t.Fatalf("a racing server got CA %s, the store holds %s", fp, want)
		}
	}
}
