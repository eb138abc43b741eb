package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/store"
)

// The datacenter CA at rest, and the embedded etcd member's mutual TLS.
//
// The member serves clients and peers only over mutual TLS, with
// certificates from the datacenter CA whose common name is vdc-server:
// a host's certificate (host:ID) is refused, as is a client with none. Its
// files are in <data>/pki; the server itself talks to the member in
// process. The CA's key in the store is sealed with <data>/pki/seal.key.

// memberCertTTL is the life of the member's certificate; it is renewed
// when a third of it is left.
const memberCertTTL = 365 * 24 * time.Hour

// serverFiles are the secrets and certificates in a server's data dir.
type serverFiles struct{ dir string }

func (f serverFiles) sealKey() string    { return filepath.Join(f.dir, "seal.key") }
func (f serverFiles) caCert() string     { return filepath.Join(f.dir, "ca.crt") }
func (f serverFiles) memberCert() string { return filepath.Join(f.dir, "etcd.crt") }
func (f serverFiles) memberKey() string  { return filepath.Join(f.dir, "etcd.key") }

func (f serverFiles) memberTLS() *store.MemberTLS {
	return &store.MemberTLS{CAFile: f.caCert(), CertFile: f.memberCert(), KeyFile: f.memberKey(), AllowedCNs: []string{pki.ServerCN}}
}

// haveMember says whether the member's TLS files are all there.
func (f serverFiles) haveMember() bool {
	for _, p := range []string{f.caCert(), f.memberCert(), f.memberKey()} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// renewMember writes the CA's certificate and a member certificate signed
// by it when force is set, when they are missing or from another CA, or
// when a third of the certificate's life is left. etcd reads the files at
// every handshake: a running member picks them up.
func (f serverFiles) renewMember(ca *pki.CA, force bool) error {
	if !force {
		caPEM, err1 := os.ReadFile(f.caCert())
		certPEM, err2 := os.ReadFile(f.memberCert())
		if err1 == nil && err2 == nil && bytes.Equal(caPEM, ca.CertPEM) {
			if c, err := pki.ParseCertPEM(certPEM); err == nil && c.CheckSignatureFrom(ca.Cert) == nil && time.Until(c.NotAfter) > memberCertTTL/3 {
				return nil
			}
		}
	}
	dns, ips := pki.LocalNames()
	certPEM, keyPEM, err := ca.Issue(pki.Names{CN: pki.ServerCN, DNS: dns, IPs: ips}, memberCertTTL)
	if err != nil {
		return fmt.Errorf("issue the embedded etcd's certificate: %w", err)
	}
	if err := pki.WritePublicFile(f.caCert(), ca.CertPEM); err != nil {
		return fmt.Errorf("write %s: %w", f.caCert(), err)
	}
	if err := pki.WriteSecretFile(f.memberKey(), keyPEM); err != nil {
		return fmt.Errorf("write %s: %w", f.memberKey(), err)
	}
	if err := pki.WritePublicFile(f.memberCert(), certPEM); err != nil {
		return fmt.Errorf("write %s: %w", f.memberCert(), err)
	}
	return nil
}

// keepMemberCert renews the member's certificate in time while the
// server runs.
func (s *Server) keepMemberCert(ctx context.Context) {
	t := time.NewTicker(12 * time.Hour)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.files.renewMember(s.ca, false); err != nil {
				s.log.Error("renew the embedded etcd's certificate", "err", err)
			}
		}
	}
}

// openEmbedded starts the embedded member with mutual TLS. The member's
// certificate needs the CA, which lives in the member: on a first start
// the CA is made here (and stored by bootstrapPKI); a data dir from before
// TLS is opened once with no listener at all to read its CA.
func (s *Server) openEmbedded(ctx context.Context) error {
	dir := filepath.Join(s.cfg.DataDir, "etcd")
	if !s.files.haveMember() {
		var ca *pki.CA
		if _, err := os.Stat(filepath.Join(dir, "member-data")); err == nil {
			e, err := store.StartEmbedded(ctx, store.EmbeddedOptions{Dir: dir})
			if err != nil {
				return err
			}
			ca, err = s.loadCA(ctx, e.Client)
			e.Close()
			if err != nil {
				return err
			}
		}
		if ca == nil {
			fresh, keyPEM, err := pki.NewCA("vdc datacenter CA")
			if err != nil {
				return err
			}
			ca, s.freshCA = fresh, &freshCA{ca: fresh, keyPEM: keyPEM}
		}
		if err := s.files.renewMember(ca, true); err != nil {
			return err
		}
	}
	e, err := store.StartEmbedded(ctx, store.EmbeddedOptions{Dir: dir, TLS: s.files.memberTLS()})
	if err != nil {
		return err
	}
	s.etcd, s.cli = e, e.Client
	return nil
}

// EtcdClientURL is where the embedded etcd member serves clients with a
// certificate from the datacenter CA (CN vdc-server), or "" with an
// external etcd.
func (s *Server) EtcdClientURL() string {
	if s.etcd == nil {
		return ""
	}
	return s.etcd.ClientURL()
}

// loadOrCreateCA reads the datacenter CA, storing fresh (or, if nil, a
// new CA) when the store has none. Racing servers agree through a
// create-if-absent.
func (s *Server) loadOrCreateCA(ctx context.Context, cli *clientv3.Client, fresh *freshCA) (*pki.CA, error) {
	ca, err := s.loadCA(ctx, cli)
	if err != nil || ca != nil {
		return ca, err
	}
	if fresh == nil {
		c, keyPEM, err := pki.NewCA("vdc datacenter CA")
		if err != nil {
			return nil, err
		}
		fresh = &freshCA{ca: c, keyPEM: keyPEM}
	}
	key, err := pki.LoadOrCreateSealKey(s.files.sealKey())
	if err != nil {
		return nil, err
	}
	rec, err := sealCA(key, fresh.ca.CertPEM, fresh.keyPEM)
	if err != nil {
		return nil, err
	}
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(caKey), "=", 0)).Then(clientv3.OpPut(caKey, rec)).Commit()
	if err != nil {
		return nil, fmt.Errorf("store the datacenter CA: %w", err)
	}
	if resp.Succeeded {
		s.log.Info("created the datacenter CA", "fingerprint", fresh.ca.Fingerprint())
		return fresh.ca, nil
	}
	// Another server stored one first: that one is the CA.
	ca, err = s.loadCA(ctx, cli)
	if err == nil && ca == nil {
		err = errors.New("read the datacenter CA: gone right after it was stored")
	}
	return ca, err
}

// loadCA reads the datacenter CA from the store (nil if there is none),
// opening its key with the seal key. A key stored in clear by an older
// server is sealed in place.
func (s *Server) loadCA(ctx context.Context, cli *clientv3.Client) (*pki.CA, error) {
	resp, err := cli.Get(ctx, caKey)
	if err != nil {
		return nil, fmt.Errorf("read the datacenter CA: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var sc storedCA
	if err := json.Unmarshal(resp.Kvs[0].Value, &sc); err != nil {
		return nil, fmt.Errorf("read the datacenter CA: %w", err)
	}
	if sc.SealedKey == "" {
		if sc.Key == "" {
			return nil, errors.New("read the datacenter CA: the record has no key")
		}
		ca, err := pki.LoadCA([]byte(sc.Cert), []byte(sc.Key))
		if err != nil {
			return nil, err
		}
		key, err := pki.LoadOrCreateSealKey(s.files.sealKey())
		if err != nil {
			return nil, err
		}
		rec, err := sealCA(key, []byte(sc.Cert), []byte(sc.Key))
		if err != nil {
			return nil, err
		}
		if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(caKey), "=", resp.Kvs[0].ModRevision)).Then(clientv3.OpPut(caKey, rec)).Commit(); err != nil {
			return nil, fmt.Errorf("seal the datacenter CA's key in the store: %w", err)
		}
		s.log.Info("sealed the datacenter CA's key in the store (it was in clear)", "sealKey", s.files.sealKey())
		return ca, nil
	}
	key, err := pki.LoadSealKey(s.files.sealKey())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read the datacenter CA: its key is sealed with seal key %s, and this server has no %s: copy that file from a server of this datacenter", sc.SealKeyID, s.files.sealKey())
	}
	if err != nil {
		return nil, err
	}
	if key.ID() != sc.SealKeyID {
		return nil, fmt.Errorf("read the datacenter CA: its key is sealed with seal key %s, not with this server's %s (%s): copy the right file from a server of this datacenter", sc.SealKeyID, s.files.sealKey(), key.ID())
	}
	keyPEM, err := key.Open(sc.SealedKey, []byte(sc.Cert))
	if err != nil {
		return nil, fmt.Errorf("read the datacenter CA: %w", err)
	}
	return pki.LoadCA([]byte(sc.Cert), keyPEM)
}

func sealCA(key *pki.SealKey, certPEM, keyPEM []byte) (string, error) {
	sealed, err := key.Seal(keyPEM, certPEM)
	if err != nil {
		return "", fmt.Errorf("seal the datacenter CA's key: %w", err)
	}
	b, _ := json.Marshal(storedCA{Cert: string(certPEM), SealedKey: sealed, SealKeyID: key.ID()})
	return string(b), nil
}
