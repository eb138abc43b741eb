package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/server"
)

func newUpCmd(g *globals) *cobra.Command {
	var f serverFlags
	var df driverFlags
	var lf logFlags
	var data string
	var hosts int
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole datacenter on this machine: a server and N host agents",
		Long: `Start a management server (embedded etcd in --data) and --hosts host agents,
each a separate 'vdc agent' process joined over mutual TLS. The first run
creates datacenter dc1, cluster cluster1, the shared datastore datastore1 and
the port group vm-network. The client config goes to $VDC_CONFIG, else to the
user config dir, so the CLI works right away. Runs in the foreground; Ctrl-C
stops it. Running it again on the same --data brings everything back.`,
		Example: `  vdc up
  vdc up --data /tmp/lab --hosts 5 --listen 127.0.0.1:0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if hosts < 0 || hosts > 1000 {
				return fmt.Errorf("--hosts must be between 0 and 1000, got %d", hosts)
			}
			if err := f.check(); err != nil {
				return err
			}
			df.pick(g.stdout)
			if err := df.check(); err != nil {
				return err
			}
			data, err := filepath.Abs(data)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(data, 0o700); err != nil {
				return fmt.Errorf("create data dir: %w", err)
			}
			if lf.file == "" {
				lf.file = filepath.Join(data, "server.log")
			}
			log, closeLog, err := lf.logger(os.Stderr)
			if err != nil {
				return err
			}
			defer closeLog()
			ctx, stop := signalContext(cmd.Context())
			defer stop()
			u := &upRun{g: g, data: data, hosts: hosts, df: &df, log: log}
			return u.run(ctx, f.config(filepath.Join(data, "server"), log))
		},
	}
	cmd.Flags().StringVar(&data, "data", "./vdc-data", "data directory for the server, hosts and datastore")
	cmd.Flags().IntVar(&hosts, "hosts", 3, "number of host agents")
	f.add(cmd)
	df.add(cmd, "")
	lf.add(cmd)
	return cmd
}

type upRun struct {
	g     *globals
	data  string
	hosts int
	df    *driverFlags
	log   *slog.Logger
	srv   *server.Server
	c     *client.Client
}

func (u *upRun) run(ctx context.Context, cfg server.Config) error {
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	u.srv = srv
	defer srv.Stop()
	cc, err := client.LoadConfig(srv.ClientConfigPath())
	if err != nil {
		return err
	}
	cfgPath := u.g.config
	if cfgPath == "" {
		cfgPath = client.DefaultConfigPath()
	}
	if err := cc.Save(cfgPath); err != nil {
		return err
	}
	if u.c, err = client.New(cc); err != nil {
		return err
	}
	if err := u.bootstrap(ctx); err != nil {
		return fmt.Errorf("create the default inventory: %w", err)
	}
	agents, err := u.startAgents(ctx)
	if err != nil {
		return err
	}
	defer agents.stop()
	connected := u.waitHosts(ctx)
	u.forgetToken(agents)
	fmt.Fprintf(u.g.stdout, `vdc is up
  API:           %s
  client config: %s
  hosts:         %d of %d connected (%s driver), logs in %s
  inventory:     datacenter %s, cluster %s, datastore %s, port group %s
try:
  vdc vm create web1 --cpus 2 --memory 1GiB --disk 10GiB
  vdc vm start web1
  vdc vm ls
Ctrl-C stops the server and agents; VMs keep their power state.
`, srv.URL(), cfgPath, connected, u.hosts, u.df.driver, filepath.Join(u.data, "hosts"), client.DefaultDatacenter, client.DefaultCluster, client.DefaultDatastore, client.DefaultPortGroup)
	<-ctx.Done()
	fmt.Fprintln(u.g.stderr, "stopping vdc...")
	return nil
}

// bootstrap creates the default inventory where it is missing.
func (u *upRun) bootstrap(ctx context.Context) error {
	return u.c.Bootstrap(ctx, filepath.Join(u.data, "datastores", client.DefaultDatastore))
}

// agentProcs supervises the agent processes.
type agentProcs struct {
	wg        sync.WaitGroup
	cancel    context.CancelFunc
	tokenFile string // the join token of the hosts that had not joined
}

func (a *agentProcs) stop() {
	a.cancel()
	a.wg.Wait()
}

func (u *upRun) startAgents(ctx context.Context) (*agentProcs, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the vdc binary: %w", err)
	}
	// Hosts that have not joined yet get a token, in a file: on the
	// command line every user of the machine would see it in ps.
	join := map[int]bool{}
	for i := 1; i <= u.hosts; i++ {
		if _, err := os.Stat(filepath.Join(u.hostDir(i), "identity.json")); err != nil {
			join[i] = true
		}
	}
	tokenFile := ""
	if len(join) > 0 {
		t, err := u.c.CreateJoinToken(ctx, api.JoinTokenRequest{Uses: len(join), TTLSeconds: 3600, Cluster: client.DefaultCluster})
		if err != nil {
			return nil, err
		}
		tokenFile = filepath.Join(u.data, "join-token")
		if err := agent.WriteJoinTokenFile(tokenFile, t.Token); err != nil {
			return nil, err
		}
	}
	actx, cancel := context.WithCancel(context.Background())
	procs := &agentProcs{cancel: cancel, tokenFile: tokenFile}
	for i := 1; i <= u.hosts; i++ {
		name := fmt.Sprintf("host-%d", i)
		tf := ""
		if join[i] {
			tf = tokenFile
		}
		args := u.agentArgs(i, tf)
		if err := os.MkdirAll(u.hostDir(i), 0o700); err != nil {
			cancel()
			return nil, err
		}
		procs.wg.Add(1)
		go func() {
			defer procs.wg.Done()
			u.supervise(actx, name, exe, args)
		}()
	}
	return procs, nil
}

// agentArgs is the command line of host i's agent; a host that has yet to
// join reads its token from tokenFile.
func (u *upRun) agentArgs(i int, tokenFile string) []string {
	args := append([]string{"agent", "--server", u.srv.URL(), "--data", u.hostDir(i), "--name", fmt.Sprintf("host-%d", i),
		"--listen", "127.0.0.1:0", "--log-file", filepath.Join(u.hostDir(i), "agent.log")}, u.df.args()...)
	if tokenFile != "" {
		args = append(args, "--join-token-file", tokenFile)
	}
	return args
}

// forgetToken removes the join token file once every host has joined; a
// restarted agent that has joined does not read it.
func (u *upRun) forgetToken(a *agentProcs) {
	if a.tokenFile == "" {
		return
	}
	for i := 1; i <= u.hosts; i++ {
		if _, err := os.Stat(filepath.Join(u.hostDir(i), "identity.json")); err != nil {
			return
		}
	}
	if err := os.Remove(a.tokenFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		u.log.Warn("cannot remove the join token file", "file", a.tokenFile, "err", err)
	}
}

func (u *upRun) hostDir(i int) string {
	return filepath.Join(u.data, "hosts", fmt.Sprintf("host-%d", i))
}

// supervise runs one agent process and starts it again if it dies, until
// ctx ends; then it stops the process with SIGTERM.
func (u *upRun) supervise(ctx context.Context, name, exe string, args []string) {
	backoff := time.Second
	for ctx.Err() == nil {
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		// Its own process group, so that Ctrl-C reaches only vdc up, which
		// stops agents in order; and it dies with vdc up.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		started := time.Now()
		if err := cmd.Start(); err != nil {
			u.log.Error("cannot start agent", "host", name, "err", err)
		} else {
			u.log.Info("agent started", "host", name, "pid", cmd.Process.Pid)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case err := <-done:
				u.log.Warn("agent exited; restarting it", "host", name, "err", err, "after", time.Since(started).Round(time.Millisecond))
				fmt.Fprintf(u.g.stderr, "agent %s exited (%v); restarting it\n", name, err)
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-done:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-done
				}
				return
			}
		}
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// waitHosts waits (up to a minute) until the agents are connected.
func (u *upRun) waitHosts(ctx context.Context) int {
	deadline := time.Now().Add(time.Minute)
	for {
		hs, err := client.List[*api.Host](ctx, u.c, api.KindHost, nil)
		n := 0
		if err == nil {
			for _, h := range hs {
				if h.Status.Connection == api.HostConnected {
					n++
				}
			}
		}
		if n >= u.hosts || time.Now().After(deadline) || ctx.Err() != nil {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}
