package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/server"
	"github.com/vdc-project/vdc/internal/store"
)

// etcdClient dials the embedded member at url with the given client
// certificates (none for a client without), trusting the datacenter CA.
func etcdClient(t *testing.T, url string, caPEM []byte, certs ...tls.Certificate) *clientv3.Client {
	t.Helper()
	pool, err := pki.PoolFromPEM(caPEM)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// tryEtcd reads the CA record and writes an admin token, as the probe did;
// it returns what it could do.
func tryEtcd(cli *clientv3.Client) (read, wrote bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if r, err := cli.Get(ctx, "/vdc/sys/ca"); err == nil && len(r.Kvs) > 0 {
		read = true
	}
	if _, err := cli.Put(ctx, "/vdc/sys/tokens/mallory", `{"user":"mallory","role":"admin"}`); err == nil {
		wrote = true
	}
	return read, wrote
}

type caRecord struct {
	Cert      string `json:"cert"`
	Key       string `json:"key"`
	SealedKey string `json:"sealedKey"`
	SealKeyID string `json:"sealKeyID"`
}

// TestEmbeddedEtcdServesOnlyServers: the embedded etcd takes mutual-TLS
// clients with a server certificate from the datacenter CA and nothing
// else, and the CA's key is not in the store in clear.
func TestEmbeddedEtcdServesOnlyServers(t *testing.T) {
	dir := t.TempDir()
	srv, c := startServer(t, dir)
	t.Cleanup(srv.Stop)
	url := srv.EtcdClientURL()
	if !strings.HasPrefix(url, "https://127.0.0.1:") {
		t.Fatalf("embedded etcd client URL %q, want https on loopback", url)
	}
	pkiDir := filepath.Join(dir, "server", "pki")
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if cc, err := client.LoadConfig(srv.ClientConfigPath()); err != nil || cc.CA != string(caPEM) {
		t.Fatalf("pki/ca.crt is not the CA in the client config (err %v)", err)
	}

	// No certificate: nothing read, nothing written.
	if read, wrote := tryEtcd(etcdClient(t, url, caPEM)); read || wrote {
		t.Fatalf("a client without a certificate could read=%v write=%v the store", read, wrote)
	}
	// Plain HTTP, as the probe did.
	plain, err := clientv3.New(clientv3.Config{Endpoints: []string{strings.Replace(url, "https://", "http://", 1)}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if read, wrote := tryEtcd(plain); read || wrote {
		t.Fatalf("a plain-HTTP client could read=%v write=%v the store", read, wrote)
	}

	// The server's own member certificate works: the test can fail.
	member, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "etcd.crt"), filepath.Join(pkiDir, "etcd.key"))
	if err != nil {
		t.Fatal(err)
	}
	good := etcdClient(t, url, caPEM, member)
	ctx := context.Background()
	r, err := good.Get(ctx, "/vdc/sys/ca")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("read the CA record with the server's certificate: %v", err)
	}
	if strings.Contains(string(r.Kvs[0].Value), "PRIVATE KEY") {
		t.Fatal("the CA's private key is in the store in clear")
	}
	var rec caRecord
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil || rec.Key != "" || rec.SealedKey == "" {
		t.Fatalf("CA record: %+v (%v), want a sealed key only", rec, err)
	}
	if r, _ := good.Get(ctx, "/vdc/sys/tokens/mallory"); len(r.Kvs) != 0 {
		t.Fatal("a refused client's token write is in the store")
	}

	// A host's certificate is from the same CA but is not a server's.
	seal, err := pki.LoadSealKey(filepath.Join(pkiDir, "seal.key"))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := seal.Open(rec.SealedKey, []byte(rec.Cert))
	if err != nil {
		t.Fatalf("open the CA's key with the server's seal key: %v", err)
	}
	ca, err := pki.LoadCA([]byte(rec.Cert), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	hostPEM, hostKey, err := ca.Issue(pki.Names{CN: pki.HostCNPrefix + "h1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	hostCert, err := tls.X509KeyPair(hostPEM, hostKey)
	if err != nil {
		t.Fatal(err)
	}
	if read, wrote := tryEtcd(etcdClient(t, url, caPEM, hostCert)); read || wrote {
		t.Fatalf("a host's certificate could read=%v write=%v the store", read, wrote)
	}

	for _, f := range []string{"seal.key", "etcd.key"} {
		if fi, err := os.Stat(filepath.Join(pkiDir, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v; want 0600", f, err, fi.Mode().Perm())
		}
	}
	if _, err := c.ListTasks(ctx, client.TaskQuery{}); err != nil {
		t.Fatalf("the API works over the TLS store: %v", err)
	}
}

// TestEmbeddedEtcdFromBeforeTLS: a data dir written before the member had
// TLS (CA key in clear) opens with the same CA, its key sealed in place.
func TestEmbeddedEtcdFromBeforeTLS(t *testing.T) {
	dir := t.TempDir()
	old, keyPEM, err := pki.NewCA("old CA")
	if err != nil {
		t.Fatal(err)
	}
	e, err := store.StartEmbedded(context.Background(), store.EmbeddedOptions{Dir: filepath.Join(dir, "server", "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(caRecord{Cert: string(old.CertPEM), Key: string(keyPEM)})
	if _, err := e.Client.Put(context.Background(), "/vdc/sys/ca", string(b)); err != nil {
		t.Fatal(err)
	}
	e.Close()

	srv, c := startServer(t, dir)
	t.Cleanup(srv.Stop)
	if cc, err := client.LoadConfig(srv.ClientConfigPath()); err != nil || cc.CA != string(old.CertPEM) {
		t.Fatalf("the server did not keep the datacenter's CA (err %v)", err)
	}
	if _, err := c.ListTasks(context.Background(), client.TaskQuery{}); err != nil {
		t.Fatal(err)
	}
	pkiDir := filepath.Join(dir, "server", "pki")
	member, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "etcd.crt"), filepath.Join(pkiDir, "etcd.key"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := etcdClient(t, srv.EtcdClientURL(), old.CertPEM, member).Get(context.Background(), "/vdc/sys/ca")
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("read the CA record: %v", err)
	}
	var rec caRecord
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil || rec.Key != "" || rec.SealedKey == "" || rec.Cert != string(old.CertPEM) {
		t.Fatalf("CA record after the upgrade: key in clear %v, sealed %v, same cert %v (%v)", rec.Key != "", rec.SealedKey != "", rec.Cert == string(old.CertPEM), err)
	}
	srv.Stop()

	// Without its seal key a server cannot open the CA, and says so.
	if err := os.Remove(filepath.Join(pkiDir, "seal.key")); err != nil {
		t.Fatal(err)
	}
	s2, err := server.New(server.Config{DataDir: filepath.Join(dir, "server"), Listen: "127.0.0.1:0", Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	err = s2.Start(context.Background())
	if err == nil {
		s2.Stop()
		t.Fatal("a server without its seal key started")
	}
	if !strings.Contains(err.Error(), "seal.key") {
		t.Fatalf("error %q does not name the missing seal key", err)
	}
}
