package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/ca"
	"github.com/vdc-project/vdc/internal/control/enroll"
	"github.com/vdc-project/vdc/internal/control/events"
	"github.com/vdc-project/vdc/internal/control/ha"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/hosts/liveness"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/leader"
	"github.com/vdc-project/vdc/internal/control/maintenance"
	"github.com/vdc-project/vdc/internal/control/migration"
	"github.com/vdc-project/vdc/internal/control/network"
	"github.com/vdc-project/vdc/internal/control/placement"
	"github.com/vdc-project/vdc/internal/control/rights"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/control/transfer"
	"github.com/vdc-project/vdc/internal/control/views"
	"github.com/vdc-project/vdc/internal/control/vms"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/server/idempotency"
	"github.com/vdc-project/vdc/internal/store"
)

// Config of a management server.
type Config struct {
	// DataDir holds the embedded etcd member, the admin token and the
	// client config.
	DataDir string
	// Listen is the API address (default 127.0.0.1:7443).
	Listen string
	// Name identifies this server in tasks and leader election (default: hostname).
	Name string
	// EtcdEndpoints, when set, use an external etcd cluster instead of the
	// embedded member.
	EtcdEndpoints []string
	// EtcdTLS is the client TLS for the external etcd cluster.
	EtcdTLS EtcdTLS
	// TLSNames are extra DNS names or IPs for the API certificate.
	TLSNames []string
	// HeartbeatInterval is how often agents report (default 2s);
	// HostTimeout is how long without a heartbeat before a host is shown
	// disconnected (default 6s).
	HeartbeatInterval time.Duration
	HostTimeout       time.Duration
	// TaskRetention is how long finished tasks are kept (default 7 days).
	TaskRetention time.Duration
	// MigrationStallTimeout fails a migration that moved no data for this
	// long (default 30s).
	MigrationStallTimeout time.Duration
	// HostCertTTL is how long the certificates issued to hosts are valid
	// (default 30 days); agents renew theirs past two thirds of that.
	HostCertTTL time.Duration
	// AuditRetention is how long audit records are kept (0: 90 days).
	AuditRetention time.Duration
	// DebugListen, when set, serves Go's pprof profiles there (keep it on
	// loopback).
	DebugListen string
	// Limits bound what clients that send nothing may hold, on the API
	// and the debug listener: connections per address before they
	// authenticate, header, idle and request-body timeouts.
	Limits netguard.Limits
	Log    *slog.Logger
}

// DefaultHostCertTTL is the life of a host certificate: short enough that
// a leaked key is not good for long, long enough that a host cut off from
// the server for days (renewals start at two thirds) keeps its identity.
const DefaultHostCertTTL = 30 * 24 * time.Hour

// Server is a running management server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	name    string
	etcd    *store.Embedded
	cli     *clientv3.Client
	store   *store.Store
	cache   *store.Cache
	ca      *pki.CA
	agents  hosts.Client
	auth    *auth.Tokens
	authn   auth.Authenticator
	authz   auth.Authorizer
	perms   *rights.Authorizer
	logins  *auth.Logins
	audit   *audit.Log
	events  *events.Log
	places  *placement.Placer
	inv     *inventory.Inventory
	enroll  *enroll.Service
	storage *storage.Service
	tally   *state.Tally
	lists   *views.ListCache
	views   *views.Viewer
	vms     *vms.Service

	transfer *transfer.Service // images, imports, exports
	// bus carries what heartbeats tell to those who act on it.
	bus         *hosts.Bus
	liveness    *liveness.Service
	ha          *ha.Service
	maintenance *maintenance.Service
	network     *network.Service // switches, port groups, the hosts' desired networks

	tlsCert  tls.Certificate
	httpSrv  *http.Server
	debugSrv *http.Server
	// reqCtx is the parent of every request's context; Stop cancels it so
	// that event streams and long polls end at once.
	reqCtx    context.Context
	reqCancel context.CancelFunc
	// stop ends the server's background work (watch, election).
	stop context.CancelFunc
	ln   net.Listener
	url  string

	elect *leader.Election

	// authority is the datacenter CA and this server's PKI files.
	authority *ca.Authority

	runner    *tasks.Runner
	submitter *tasks.Submitter
	migration *migration.Service
	st        *state.State
	idem      *idempotency.Keys
	// dropAnswer, set by tests only, names requests whose answer is lost.
	dropAnswer atomic.Pointer[func(method, path string) bool]
	openapiCache
}

// New prepares a server; Start brings it up.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("server: data dir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:7443"
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.HostTimeout <= 0 {
		cfg.HostTimeout = 3 * cfg.HeartbeatInterval
	}
	if cfg.TaskRetention <= 0 {
		cfg.TaskRetention = 7 * 24 * time.Hour
	}
	if cfg.MigrationStallTimeout <= 0 {
		cfg.MigrationStallTimeout = 30 * time.Second
	}
	if cfg.HostCertTTL <= 0 {
		cfg.HostCertTTL = DefaultHostCertTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log.With("server", cfg.Name)
	return &Server{cfg: cfg, log: log, name: cfg.Name, authority: ca.New(filepath.Join(cfg.DataDir, "pki"), log)}, nil
}

// EtcdTLS names the PEM files of a server's TLS client of an external
// etcd cluster (the cluster's CA, and a client certificate and key).
type EtcdTLS struct {
	CAFile, CertFile, KeyFile string
}

// URL is the API's base URL once started.
func (s *Server) URL() string { return s.url }

// ClientConfigPath is where the server wrote the admin's client config.
func (s *Server) ClientConfigPath() string { return filepath.Join(s.cfg.DataDir, "admin.json") }

// Start opens the store, bootstraps the CA and admin token on first start,
// and serves the API. It returns once the API is listening.
func (s *Server) Start(ctx context.Context) (err error) {
	ctx, s.stop = context.WithCancel(ctx)
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create server data dir: %w", err)
	}
	if err := s.openStore(ctx); err != nil {
		return err
	}
	defer func() {
		if err != nil { // a server that did not start leaves nothing running
			s.stop()
			s.closeStore()
		}
	}()
	if err := s.startState(ctx); err != nil {
		return err
	}
	if err := s.bootstrapPKI(ctx); err != nil {
		return err
	}
	s.newServices()
	go s.auth.Watch(ctx, s.log)
	go s.audit.Run(ctx)
	ln, err := netguard.Listen(s.cfg.Listen, s.cfg.Limits, s.log)
	if err != nil {
		return fmt.Errorf("API listen on %s: %w", s.cfg.Listen, err)
	}
	s.ln = ln
	s.url = "https://" + dialable(ln.Addr().(*net.TCPAddr))
	if err := s.bootstrapAdmin(ctx); err != nil {
		ln.Close()
		return err
	}
	s.elect = leader.New(s.store, s.name, s.log)
	s.runner = tasks.NewRunner(s.st, s.elect.Txn, s.name, s.log)
	s.registerTaskHandlers(s.runner)
	s.serveAPI(ln)
	s.serveDebug()
	go s.elect.Campaign(ctx, s.lead, s.runner.Wait)
	s.log.Info("management server running", "api", s.url, "data", s.cfg.DataDir, "etcd", s.EtcdClientURL())
	return nil
}

// startState starts the cache over the store, with what follows it: the
// tally, the views' list cache and the event log.
func (s *Server) startState(ctx context.Context) error {
	s.cache = store.NewCache(s.store, s.log)
	s.perms = rights.New(s.cache)
	s.tally = state.NewTally()
	s.cache.Observe(s.tally.Observe)
	s.st = &state.State{Store: s.store, Cache: s.cache}
	s.views = views.New(s.st, s.tally)
	s.lists = views.NewListCache(s.views)
	s.cache.Observe(s.lists.Observe)
	if err := s.cache.Start(ctx); err != nil {
		return err
	}
	s.events = events.NewLog(4096)
	s.cache.Subscribe(s.events.Observe)
	return nil
}

// newServices builds the control services on the state and the hosts'
// client (see internal/control's doc for who calls whom).
func (s *Server) newServices() {
	s.idem = idempotency.New(s.store, s.cache)
	s.submitter = &tasks.Submitter{State: s.st, Guard: s.idem}
	s.places = placement.New(s.st, s.tally)
	s.inv = &inventory.Inventory{St: s.st, Tally: s.tally, Hosts: s.agents, Tasks: s.submitter, ServerDataDir: s.cfg.DataDir}
	s.enroll = enroll.New(s.inv, s.ca, s.cfg.HostCertTTL, s.log)
	s.migration = migration.New(migration.Deps{State: s.st, Inventory: s.inv, Hosts: s.agents, Placer: s.places, Tasks: s.submitter,
		Log: s.log, StallTimeout: s.cfg.MigrationStallTimeout})
	s.storage = storage.New(storage.Deps{State: s.st, Inv: s.inv, Hosts: s.agents, Places: s.places, Tasks: s.submitter, Log: s.log})
	s.newHostServices()
	s.vms = s.newVMs()
	s.transfer = s.newTransfer()
	s.auth = auth.NewTokens(s.store)
	s.authn, s.authz = users{tokens: s.auth, cache: s.cache}, s.perms
	s.logins = auth.NewLogins()
	s.audit = audit.New(s.store, s.cfg.AuditRetention, s.log)
}

// serveAPI serves the API on ln, with mutual TLS for hosts.
func (s *Server) serveAPI(ln net.Listener) {
	s.reqCtx, s.reqCancel = context.WithCancel(context.Background())
	// No write or whole-request read timeout: event streams, long polls,
	// consoles and multi-GB transfers run as long as they make progress.
	s.httpSrv = s.cfg.Limits.Server(s.routes(), s.log)
	s.httpSrv.BaseContext = func(net.Listener) context.Context { return s.reqCtx }
	s.httpSrv.TLSConfig = pki.Harden(&tls.Config{
		Certificates: []tls.Certificate{s.tlsCert},
		ClientCAs:    s.ca.Pool(),
		// Users bring tokens, hosts bring certificates.
		ClientAuth: tls.VerifyClientCertIfGiven,
	})
	go func() {
		if err := s.httpSrv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("API server stopped", "err", err)
		}
	}()
}

// serveDebug serves pprof on the debug listener, if one is configured.
func (s *Server) serveDebug() {
	if s.cfg.DebugListen == "" {
		return
	}
	dln, err := netguard.Listen(s.cfg.DebugListen, s.cfg.Limits, s.log)
	if err != nil {
		s.log.Error("no debug endpoint", "listen", s.cfg.DebugListen, "err", err)
		return
	}
	s.debugSrv = s.cfg.Limits.Server(debugMux(), s.log)
	go func() {
		s.log.Info("debug endpoint (pprof)", "listen", dln.Addr().String())
		if err := s.debugSrv.Serve(dln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("debug endpoint stopped", "err", err)
		}
	}()
}

func (s *Server) openStore(ctx context.Context) error {
	if len(s.cfg.EtcdEndpoints) > 0 {
		cc := clientv3.Config{Endpoints: s.cfg.EtcdEndpoints, DialTimeout: 10 * time.Second, Context: ctx}
		if t := s.cfg.EtcdTLS; t != (EtcdTLS{}) {
			tc, err := (transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile}).ClientConfig()
			if err != nil {
				return fmt.Errorf("TLS for etcd %v: %w", s.cfg.EtcdEndpoints, err)
			}
			cc.TLS = pki.Harden(tc)
		}
		cli, err := clientv3.New(cc)
		if err != nil {
			return fmt.Errorf("connect to etcd %v: %w", s.cfg.EtcdEndpoints, err)
		}
		s.cli = cli
	} else if err := s.openEmbedded(ctx); err != nil {
		return err
	}
	s.store = store.New(s.cli)
	return nil
}

// Stop shuts the API down, lets running tasks finish for a moment, resigns
// leadership and closes the store. VMs are not touched.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s.debugSrv != nil {
		s.debugSrv.Close()
	}
	if s.httpSrv != nil {
		// Requests get a second to finish; then streams and long polls,
		// which would not, are ended.
		done := make(chan struct{})
		go func() { _ = s.httpSrv.Shutdown(ctx); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Second):
			s.reqCancel()
			<-done
		}
	}
	resign := func(context.Context) {}
	if s.elect != nil {
		resign = s.elect.Resigner()
	}
	if s.stop != nil {
		s.stop() // no new campaign; the leader's duties end too
	}
	resign(ctx)
	s.closeStore()
	s.log.Info("management server stopped")
}

func (s *Server) closeStore() {
	if s.etcd != nil {
		s.etcd.Close()
	} else if s.cli != nil {
		s.cli.Close()
	}
}

// dialable turns a listen address into one a client can dial.
func dialable(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP == nil || a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(a.Port))
}

func debugMux() *http.ServeMux {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return m
}
