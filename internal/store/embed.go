package store

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// EmbeddedOptions configure the single etcd member a server embeds.
type EmbeddedOptions struct {
	Dir string // data directory of the member
	// ClientURL and PeerURL default to loopback with a free port: the
	// server talks to the member in-process and nothing else needs them
	// until the member grows into a cluster.
	ClientURL, PeerURL string
	// QuotaBytes bounds the database (default etcd's 2 GiB).
	QuotaBytes int64
}

// Embedded is a running embedded etcd member with an in-process client.
type Embedded struct {
	Etcd   *embed.Etcd
	Client *clientv3.Client
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
	if cu == "" {
		cu = "http://127.0.0.1:0"
	}
	if pu == "" {
		pu = "http://127.0.0.1:0"
	}
	cURL, err := url.Parse(cu)
	if err != nil {
		return nil, fmt.Errorf("etcd client URL %q: %w", cu, err)
	}
	pURL, err := url.Parse(pu)
	if err != nil {
		return nil, fmt.Errorf("etcd peer URL %q: %w", pu, err)
	}
	cfg.ListenClientUrls = []url.URL{*cURL}
	cfg.AdvertiseClientUrls = []url.URL{*cURL}
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
	return &Embedded{Etcd: e, Client: v3client.New(e.Server)}, nil
}

// Close stops the member.
func (e *Embedded) Close() {
	e.Client.Close()
	e.Etcd.Close()
}

func fileLogger(path string) (*zap.Logger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open etcd log: %w", err)
	}
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(f), zapcore.InfoLevel)), nil
}
