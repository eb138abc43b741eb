package proccmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/control/audit"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/server"
)

// logFlags configure logging for the long-running commands.
type logFlags struct {
	level string
	file  string
}

func (l *logFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&l.file, "log-file", "", "write logs to this file instead of stderr")
}

func (l *logFlags) logger(defaultOut *os.File) (*slog.Logger, func(), error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	out, closeFn := defaultOut, func() {}
	if l.file != "" {
		f, err := os.OpenFile(l.file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		out, closeFn = f, func() { f.Close() }
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: lvl})), closeFn, nil
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

type serverFlags struct {
	data, listen, name string
	etcd               []string
	etcdTLS            server.EtcdTLS
	tlsNames           []string
	heartbeat, timeout time.Duration
	retention          time.Duration
	stall              time.Duration
	hostCertTTL        time.Duration
	auditRetention     time.Duration
	debug              string
	maxConns           int
}

func (f *serverFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.listen, "listen", "127.0.0.1:7443", "API address (host:port)")
	cmd.Flags().StringVar(&f.name, "name", "", "name of this server (default: the hostname)")
	cmd.Flags().StringSliceVar(&f.etcd, "etcd-endpoints", nil, "use this external etcd cluster instead of the embedded one")
	cmd.Flags().StringVar(&f.etcdTLS.CAFile, "etcd-cacert", "", "CA certificate (PEM) of the external etcd cluster's TLS")
	cmd.Flags().StringVar(&f.etcdTLS.CertFile, "etcd-cert", "", "client certificate (PEM) for the external etcd cluster")
	cmd.Flags().StringVar(&f.etcdTLS.KeyFile, "etcd-key", "", "client key (PEM) for the external etcd cluster")
	cmd.Flags().StringSliceVar(&f.tlsNames, "tls-san", nil, "extra DNS names or IPs for the API certificate")
	cmd.Flags().DurationVar(&f.heartbeat, "heartbeat-interval", 2*time.Second, "how often hosts report")
	cmd.Flags().DurationVar(&f.timeout, "host-timeout", 6*time.Second, "how long without a heartbeat before a host is shown disconnected")
	cmd.Flags().DurationVar(&f.retention, "task-retention", 7*24*time.Hour, "how long finished tasks are kept")
	cmd.Flags().DurationVar(&f.stall, "migration-stall-timeout", 30*time.Second, "fail a migration that moved no data for this long")
	cmd.Flags().DurationVar(&f.hostCertTTL, "host-cert-ttl", server.DefaultHostCertTTL,
		"life of the certificates issued to hosts (at least 1m); agents renew theirs past two thirds of it")
	cmd.Flags().DurationVar(&f.auditRetention, "audit-retention", audit.DefaultRetention, "how long audit records are kept (at least 1h)")
	cmd.Flags().StringVar(&f.debug, "debug-listen", "", "serve Go pprof profiles on this address (keep it on loopback)")
	addMaxConnsFlag(cmd, &f.maxConns)
}

// addMaxConnsFlag adds --max-conns-per-address, for the server's and the
// agent's listeners alike.
func addMaxConnsFlag(cmd *cobra.Command, v *int) {
	cmd.Flags().IntVar(v, "max-conns-per-address", netguard.DefaultMaxConnsPerIP,
		"connections one remote address may hold open before authenticating (a token or a host certificate); more are refused")
}

func checkMaxConns(n int) error {
	if n < 1 || n > 1<<20 {
		return fmt.Errorf("--max-conns-per-address must be between 1 and %d, got %d", 1<<20, n)
	}
	return nil
}

func (f *serverFlags) check() error {
	if f.etcdTLS != (server.EtcdTLS{}) && len(f.etcd) == 0 {
		return errors.New("--etcd-cacert, --etcd-cert and --etcd-key are for an external etcd (--etcd-endpoints); the embedded one has its own TLS in <data>/pki")
	}
	if (f.etcdTLS.CertFile == "") != (f.etcdTLS.KeyFile == "") {
		return errors.New("--etcd-cert and --etcd-key go together")
	}
	if f.auditRetention < time.Hour {
		return fmt.Errorf("--audit-retention must be at least 1h, got %s", f.auditRetention)
	}
	if f.hostCertTTL < time.Minute || f.hostCertTTL > 5*365*24*time.Hour {
		return fmt.Errorf("--host-cert-ttl must be between 1m and 5 years, got %s", f.hostCertTTL)
	}
	return checkMaxConns(f.maxConns)
}

func (f *serverFlags) config(dataDir string, log *slog.Logger) server.Config {
	return server.Config{DataDir: dataDir, Listen: f.listen, Name: f.name, EtcdEndpoints: f.etcd, EtcdTLS: f.etcdTLS, TLSNames: f.tlsNames,
		HeartbeatInterval: f.heartbeat, HostTimeout: f.timeout, TaskRetention: f.retention, MigrationStallTimeout: f.stall,
		HostCertTTL: f.hostCertTTL, AuditRetention: f.auditRetention, DebugListen: f.debug, Limits: netguard.Limits{MaxConnsPerIP: f.maxConns}, Log: log}
}

func NewServerCmd(g *cmdutil.Globals) *cobra.Command {
	var f serverFlags
	var lf logFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the management server (REST API, tasks, controllers)",
		Long: `Run the management server. State lives in an embedded etcd in --data
(or in an external etcd cluster with --etcd-endpoints). On its first start the
server creates the datacenter CA and an admin token, and writes a client config
to <data>/admin.json: point VDC_CONFIG at it to use the CLI. The embedded etcd
serves only mutual-TLS clients with a certificate from the datacenter CA
(<data>/pki/etcd.crt, etcd.key and ca.crt for etcdctl); the CA's key in the
store is sealed with <data>/pki/seal.key, which never leaves the data dir. Hosts join with a
token from 'vdc host token create'.`,
		Example: `  vdc server --data /var/lib/vdc --listen 0.0.0.0:7443
  VDC_CONFIG=/var/lib/vdc/admin.json vdc host token create --uses 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.check(); err != nil {
				return err
			}
			log, closeLog, err := lf.logger(os.Stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			srv, err := server.New(f.config(f.data, log))
			if err != nil {
				return err
			}
			if err := srv.Start(ctx); err != nil {
				return err
			}
			fmt.Fprintf(g.Stdout, "vdc server listening on %s\nclient config: %s (export VDC_CONFIG=%s)\n", srv.URL(), srv.ClientConfigPath(), srv.ClientConfigPath())
			<-ctx.Done()
			srv.Stop()
			return nil
		},
	}
	cmd.Flags().StringVar(&f.data, "data", "./vdc-server", "data directory")
	f.add(cmd)
	lf.add(cmd)
	return cmd
}
