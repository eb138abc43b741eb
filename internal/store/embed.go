package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/vdc-project/vdc/internal/pki"
)

// EmbeddedOptions configure the single etcd member a server embeds.
type EmbeddedOptions struct {
	Dir string // data directory of the member
	// ClientURL and PeerURL default to loopback with a free port (https):
	// the server talks to the member in-process; the listeners are for
	// tools and, later, other members.
	ClientURL, PeerURL string
	// TLS secures both listeners with mutual TLS. Without it the member
	// has no client listener at all and its peer listener is a unix
	// socket in Dir (0700): nothing but its own process can reach it.
	TLS *MemberTLS
	// QuotaBytes bounds the database (default etcd's 2 GiB).
	QuotaBytes int64
}

// MemberTLS names the files of an embedded member's mutual TLS: clients
// and peers must present a certificate from the CA in CAFile with a common
// name in AllowedCNs. etcd reads CertFile and KeyFile at every handshake,
// so they may be renewed in place while the member runs.
type MemberTLS struct {
	CAFile, CertFile, KeyFile string
	AllowedCNs                []string
}

func (t *MemberTLS) info() transport.TLSInfo {
	return transport.TLSInfo{
		CertFile:       t.CertFile,
		KeyFile:        t.KeyFile,
		ClientCertFile: t.CertFile,
		ClientKeyFile:  t.KeyFile,
		TrustedCAFile:  t.CAFile,
		ClientCertAuth: true,
		AllowedCNs:     t.AllowedCNs,
		// vdc's one TLS policy (see pki.Harden), for clients and peers.
		MinVersion:   tls.VersionTLS12,
		CipherSuites: pki.CipherSuites,
	}
}

// Embedded is a running embedded etcd member with an in-process client.
type Embedded struct {
	Etcd   *embed.Etcd
	Client *clientv3.Client

	sockDir string // of the peer socket, without TLS
	once    sync.Once
}

// StartEmbedded starts (or restarts, on an existing Dir) a single-member
// etcd. Its own log goes to etcd.log beside the data.
func StartEmbedded(ctx context.Context, o EmbeddedOptions) (*Embedded, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create etcd data dir: %w", err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "vdc"
	cfg.Dir = filepath.Join(o.Dir, "member-data")
	cu, pu := o.ClientURL, o.PeerURL
	var sockDir string
	if o.TLS != nil {
		if cu == "" {
			cu = "https://127.0.0.1:0"
		}
		if pu == "" {
			pu = "https://127.0.0.1:0"
		}
		cfg.ClientTLSInfo = o.TLS.info()
		cfg.PeerTLSInfo = o.TLS.info()
	} else {
		if cu != "" || pu != "" {
			return nil, fmt.Errorf("start embedded etcd in %s: listen URLs need TLS", o.Dir)
		}
		// A short private path: a socket's path may not pass 108 bytes.
		var err error
		sockDir, err = os.MkdirTemp("", "vdc-etcd-")
		if err != nil {
			return nil, fmt.Errorf("start embedded etcd in %s: %w", o.Dir, err)
		}
		defer func() {
			if sockDir != "" {
				os.RemoveAll(sockDir)
			}
		}()
		pu = "unix://" + filepath.Join(sockDir, "peer.sock")
	}
	if cu != "" {
		cURL, err := url.Parse(cu)
		if err != nil {
			return nil, fmt.Errorf("etcd client URL %q: %w", cu, err)
		}
		cfg.ListenClientUrls = []url.URL{*cURL}
		cfg.AdvertiseClientUrls = []url.URL{*cURL}
	} else {
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = nil, nil
	}
	pURL, err := url.Parse(pu)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q: %w", pu, err)
	}
	cfg.ListenPeerUrls = []url.URL{*pURL}
	cfg.AdvertisePeerUrls = []url.URL{*pURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "1h"
	cfg.QuotaBackendBytes = o.QuotaBytes
	lg, err := fileLogger(filepath.Join(o.Dir, "etcd.log"))
	if err != nil {
		return nil, err
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("start embedded etcd in %s: %w", o.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("embedded etcd in %s did not become ready in 60s (see %s)", o.Dir, filepath.Join(o.Dir, "etcd.log"))
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	}
	em := &Embedded{Etcd: e, Client: v3client.New(e.Server), sockDir: sockDir}
	sockDir = "" // the member's now; Close removes it
	return em, nil
}

// ClientURL is where the member listens for clients (mutual TLS), or ""
// when it has no client listener.
func (e *Embedded) ClientURL() string {
	if len(e.Etcd.Clients) == 0 {
		return ""
	}
	return "https://" + e.Etcd.Clients[0].Addr().String()
}

// Close stops the member; closing it again does nothing.
func (e *Embedded) Close() {
	e.once.Do(func() {
		e.Client.Close()
		e.Etcd.Close()
		if e.sockDir != "" {
			os.RemoveAll(e.sockDir)
		}
	})
}

func fileLogger(path string) (*zap.Logger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open etcd log: %w", err)
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(f), zapcore.InfoLevel)), nil
}
