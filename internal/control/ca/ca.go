// Package ca is the datacenter's certificate authority at rest and the
// embedded etcd member's mutual TLS: it loads the CA from the store,
// creating it on a datacenter's very first start, with its private key
// sealed by the server's seal key; it writes the member's TLS files and
// renews its certificate in time; and it issues the server's serving
// certificate.
//
// A server's PKI files are in <data>/pki: ca.crt (the CA's certificate),
// etcd.crt and etcd.key (the member's), seal.key (mode 0600, never leaves
// the data dir).
//
// ca depends on pki and store only (layer 2 of internal/control).
package ca

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

// Key is where the datacenter CA is in the store.
const Key = store.SysPrefix + "ca"

// caName is the common name of a new datacenter CA.
const caName = "vdc datacenter CA"

// stored is the datacenter CA in the store. Its private key is sealed
// with the server's seal key (a file in its data dir, mode 0600), bound to
// the certificate: whoever reads the store without that file learns
// nothing of the key. Key holds it in clear in stores written before
// sealing; a server that reads one seals it in place.
type stored struct {
	Cert      string `json:"cert"`
	Key       string `json:"key,omitempty"`
	SealedKey string `json:"sealedKey,omitempty"`
	SealKeyID string `json:"sealKeyID,omitempty"`
}

// fresh is a CA made by this server and not yet in the store.
type fresh struct {
	ca     *pki.CA
	keyPEM []byte
}

func newFresh() (*fresh, error) {
	c, keyPEM, err := pki.NewCA(caName)
	if err != nil {
		return nil, err
	}
	return &fresh{ca: c, keyPEM: keyPEM}, nil
}

// Authority is one server's side of the datacenter CA: its PKI files and,
// once loaded, the CA.
type Authority struct {
	dir string
	log *slog.Logger
	// fresh is the CA made for a new embedded member, until Load stores it.
	fresh *fresh
	ca    *pki.CA

	// tick and checked, set by tests, stand for KeepMemberCert's ticker
	// and hear each of its checks' outcome.
	tick    <-chan time.Time
	checked func(error)
}

// New returns the authority whose files are in dir (<data>/pki).
func New(dir string, log *slog.Logger) *Authority {
	return &Authority{dir: dir, log: log}
}

// SealKeyPath is the file of the key that seals the CA's key in the store.
func (a *Authority) SealKeyPath() string { return filepath.Join(a.dir, "seal.key") }

// CA is the datacenter CA, nil until Load.
func (a *Authority) CA() *pki.CA { return a.ca }

// Load reads the datacenter CA from the store, storing a new one (the CA
// OpenEmbedded made for a new member, if any) when the store has none.
// Racing servers agree through a create-if-absent.
func (a *Authority) Load(ctx context.Context, cli *clientv3.Client) (*pki.CA, error) {
	c, err := a.loadOrCreate(ctx, cli, a.fresh)
	if err != nil {
		return nil, err
	}
	a.ca, a.fresh = c, nil
	return c, nil
}

func (a *Authority) loadOrCreate(ctx context.Context, cli *clientv3.Client, f *fresh) (*pki.CA, error) {
	c, err := a.read(ctx, cli)
	if err != nil || c != nil {
		return c, err
	}
	if f == nil {
		if f, err = newFresh(); err != nil {
			return nil, err
		}
	}
	key, err := pki.LoadOrCreateSealKey(a.SealKeyPath())
	if err != nil {
		return nil, err
	}
	rec, err := seal(key, f.ca.CertPEM, f.keyPEM)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(Key), "=", 0)).Then(clientv3.OpPut(Key, rec)).Commit()
	if err != nil {
		return nil, fmt.Errorf("store the datacenter CA: %w", err)
	}
	if resp.Succeeded {
		a.log.Info("created the datacenter CA", "fingerprint", f.ca.Fingerprint())
		return f.ca, nil
	}
	// Another server stored one first: that one is the CA.
	c, err = a.read(ctx, cli)
	if err == nil && c == nil {
		err = errors.New("read the datacenter CA: gone right after it was stored")
	}
	return c, err
}

// read reads the datacenter CA from the store (nil if there is none),
// opening its key with the seal key. A key stored in clear by an older
// server is sealed in place.
func (a *Authority) read(ctx context.Context, cli *clientv3.Client) (*pki.CA, error) {
	resp, err := cli.Get(ctx, Key)
	if err != nil {
		return nil, fmt.Errorf("read the datacenter CA: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var sc stored
	if err := json.Unmarshal(resp.Kvs[0].Value, &sc); err != nil {
		return nil, fmt.Errorf("read the datacenter CA: %w", err)
	}
	if sc.SealedKey == "" {
		return a.sealInPlace(ctx, cli, sc, resp.Kvs[0].ModRevision)
	}
	key, err := pki.LoadSealKey(a.SealKeyPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the datacenter CA: its key is sealed with seal key %s, and this server has no %s: copy that file from a server of this datacenter", sc.SealKeyID, a.SealKeyPath())
	}
	if err != nil {
		return nil, err
	}
	if key.ID() != sc.SealKeyID {
		return nil, fmt.Errorf("read the datacenter CA: its key is sealed with seal key %s, not with this server's %s (%s): copy the right file from a server of this datacenter", sc.SealKeyID, a.SealKeyPath(), key.ID())
	}
	keyPEM, err := key.Open(sc.SealedKey, []byte(sc.Cert))
	if err != nil {
		return nil, fmt.Errorf("read the datacenter CA: %w", err)
	}
	return pki.LoadCA([]byte(sc.Cert), keyPEM)
}

// sealInPlace seals the key of a record an older server wrote in clear
// (at revision rev), and returns its CA.
func (a *Authority) sealInPlace(ctx context.Context, cli *clientv3.Client, sc stored, rev int64) (*pki.CA, error) {
	if sc.Key == "" {
		return nil, errors.New("read the datacenter CA: the record has no key")
	}
	c, err := pki.LoadCA([]byte(sc.Cert), []byte(sc.Key))
	if err != nil {
		return nil, err
	}
	key, err := pki.LoadOrCreateSealKey(a.SealKeyPath())
	if err != nil {
		return nil, err
	}
	rec, err := seal(key, []byte(sc.Cert), []byte(sc.Key))
	if err != nil {
		return nil, err
	}
	if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(Key), "=", rev)).Then(clientv3.OpPut(Key, rec)).Commit(); err != nil {
		return nil, fmt.Errorf("seal the datacenter CA's key in the store: %w", err)
	}
	a.log.Info("sealed the datacenter CA's key in the store (it was in clear)", "sealKey", a.SealKeyPath())
	return c, nil
}

// seal is the store's record of a CA, its key sealed with key.
func seal(key *pki.SealKey, certPEM, keyPEM []byte) (string, error) {
	sealed, err := key.Seal(keyPEM, certPEM)
	if err != nil {
		return "", fmt.Errorf("seal the datacenter CA's key: %w", err)
	}
	b, _ := json.Marshal(stored{Cert: string(certPEM), SealedKey: sealed, SealKeyID: key.ID()})
	return string(b), nil
}
