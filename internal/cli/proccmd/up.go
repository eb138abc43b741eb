package proccmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/lab"
	"github.com/vdc-project/vdc/internal/server"
)

func NewUpCmd(g *cmdutil.Globals) *cobra.Command {
	o := &upFlags{}
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Start a whole datacenter on this machine: a server and N host agents",
		Long: `Start a management server (embedded etcd in --data) and --hosts host agents,
each a separate 'vdc agent' process joined over mutual TLS. The first run
creates datacenter dc1, cluster cluster1, the shared datastore datastore1 and
the port group vm-network. The client config goes to $VDC_CONFIG, else to the
user config dir, so the CLI works right away. It says "vdc is up" once every
host has joined and reaches the datastore (or fails, naming the host that did
not and its log, after --ready-timeout), with how each host runs VMs (KVM or
TCG, and why not KVM) and what it offers them. The hosts share this machine:
with real VMs each offers its share of the CPUs and memory (or
--capacity-cpus/--capacity-memory each). As root with real VMs each host
runs in its own network namespace on a lab bridge (--netns), the switch dvs1
carries vm-network as a VXLAN overlay with DHCP, and the server listens on
the bridge. Runs in the foreground; Ctrl-C stops it (the VMs, and the lab,
stay). Running it again on the same --data brings everything back.`,
		Example: `  vdc up
  vdc up --data /tmp/lab --hosts 5 --listen 127.0.0.1:0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd, g) },
	}
	cmd.Flags().StringVar(&o.data, "data", "./vdc-data", "data directory for the server, hosts and datastore")
	cmd.Flags().IntVar(&o.hosts, "hosts", 3, "number of host agents")
	cmd.Flags().DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "how long the hosts may take to join before vdc up gives up")
	o.capf.add(cmd)
	o.labf.add(cmd)
	o.f.add(cmd)
	o.df.add(cmd, "")
	o.lf.add(cmd)
	return cmd
}

// upFlags are vdc up's flags.
type upFlags struct {
	f            serverFlags
	df           driverFlags
	lf           logFlags
	capf         capacityFlags
	labf         labFlags
	data         string
	hosts        int
	readyTimeout time.Duration
}

// run checks the flags, makes the lab network when there is one, and runs
// the datacenter until Ctrl-C.
func (o *upFlags) run(cmd *cobra.Command, g *cmdutil.Globals) error {
	if err := o.check(cmd, g); err != nil {
		return err
	}
	data, err := filepath.Abs(o.data)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(data, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if o.lf.file == "" {
		o.lf.file = filepath.Join(data, "server.log")
	}
	log, closeLog, err := o.lf.logger(os.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	u := &upRun{g: g, data: data, hosts: o.hosts, df: &o.df, capf: &o.capf, readyTimeout: o.readyTimeout, maxConns: o.f.maxConns, log: log}
	cfg := o.f.config(filepath.Join(data, "server"), log)
	if u.lab, err = o.labf.pick(o.df.driver, data); err != nil {
		return err
	}
	if u.lab != nil {
		if err := u.lab.Ensure(o.hosts); err != nil {
			return fmt.Errorf("make the hosts' lab network: %w", err)
		}
		if err := labListen(u.lab, &cfg); err != nil {
			return err
		}
	}
	return u.run(ctx, cfg)
}

// check checks the flags and picks the driver.
func (o *upFlags) check(cmd *cobra.Command, g *cmdutil.Globals) error {
	if o.hosts < 0 || o.hosts > 1000 {
		return fmt.Errorf("--hosts must be between 0 and 1000, got %d", o.hosts)
	}
	if !cmd.Flags().Changed("max-conns-per-address") {
		// Every host of vdc up is on 127.0.0.1 (or the lab), and all of
		// them join and first report at once, before they count as
		// authenticated.
		o.f.maxConns = max(o.f.maxConns, 2*o.hosts+16)
	}
	if err := o.f.check(); err != nil {
		return err
	}
	if o.readyTimeout <= 0 {
		return fmt.Errorf("--ready-timeout must be positive, got %s", o.readyTimeout)
	}
	o.df.pick(g.Stdout)
	if err := o.df.check(); err != nil {
		return err
	}
	return o.capf.share(o.df.driver, o.hosts)
}

type upRun struct {
	g            *cmdutil.Globals
	data         string
	hosts        int
	df           *driverFlags
	capf         *capacityFlags
	readyTimeout time.Duration
	// maxConns is --max-conns-per-address, for the agents too.
	maxConns int
	started  time.Time // before the server started: hosts heard from since are live
	log      *slog.Logger
	// lab, when set, is the network of the hosts' namespaces.
	lab *lab.Lab
	srv *server.Server
	c   *client.Client
}

func (u *upRun) run(ctx context.Context, cfg server.Config) error {
	u.started = time.Now()
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
	cfgPath := u.g.Config
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
	hosts, err := u.waitHosts(ctx)
	if err != nil {
		return err
	}
	u.forgetToken(agents)
	fmt.Fprintf(u.g.Stdout, `vdc is up
  API:           %s
  client config: %s
  hosts:         %d of %d ready (%s driver), logs in %s
%s  inventory:     datacenter %s, cluster %s, datastore %s, port group %s
%stry:
  vdc vm create web1 --cpus 2 --memory 1GiB --disk 10GiB
  vdc vm start web1
  vdc vm ls
Ctrl-C stops the server and agents; VMs keep their power state.
`, srv.URL(), cfgPath, len(hosts), u.hosts, u.df.driver, filepath.Join(u.data, "hosts"), u.hostLines(hosts),
		client.DefaultDatacenter, client.DefaultCluster, client.DefaultDatastore, client.DefaultPortGroup, u.networkLines())
	<-ctx.Done()
	fmt.Fprintln(u.g.Stderr, "stopping vdc...")
	return nil
}

// bootstrap creates the default inventory where it is missing.
func (u *upRun) bootstrap(ctx context.Context) error {
	return u.c.Bootstrap(ctx, filepath.Join(u.data, "datastores", client.DefaultDatastore), u.lab != nil)
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
		bin := exe
		if u.lab != nil { // the agent runs in its host's namespace
			prefix := u.lab.Exec(i)
			bin, args = prefix[0], append(append(prefix[1:], exe), args...)
		}
		procs.wg.Add(1)
		go func() {
			defer procs.wg.Done()
			u.supervise(actx, name, bin, u.agentLog(i), args)
		}()
	}
	return procs, nil
}

// agentArgs is the command line of host i's agent; a host that has yet to
// join reads its token from tokenFile.
func (u *upRun) agentArgs(i int, tokenFile string) []string {
	listen := "127.0.0.1:0"
	if u.lab != nil {
		listen = u.lab.HostIP(i).String() + ":0"
	}
	args := append([]string{"agent", "--server", u.srv.URL(), "--data", u.hostDir(i), "--name", fmt.Sprintf("host-%d", i),
		"--listen", listen, "--log-file", u.agentLog(i),
		"--max-conns-per-address", strconv.Itoa(u.maxConns)}, u.df.args()...)
	args = append(args, u.capf.args()...)
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
func (u *upRun) supervise(ctx context.Context, name, exe, logFile string, args []string) {
	backoff := time.Second
	for ctx.Err() == nil {
		cmd := exec.Command(exe, args...)
		// What it prints (why it would not start) goes to its log too.
		out, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			u.log.Error("cannot open the agent's log", "host", name, "err", err)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
		} else {
			cmd.Stdout, cmd.Stderr = out, out
		}
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
				fmt.Fprintf(u.g.Stderr, "agent %s exited (%v); restarting it\n", name, err)
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
		if out != nil {
			out.Close()
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

// waitHosts waits until every agent has joined and reaches its
// datastores, saying so for each as it does; after --ready-timeout it
// fails naming the hosts that did not, with their logs.
func (u *upRun) waitHosts(ctx context.Context) ([]*api.Host, error) {
	fmt.Fprintf(u.g.Stdout, "waiting for %d hosts to join...\n", u.hosts)
	deadline := time.Now().Add(u.readyTimeout)
	said := map[string]bool{}
	lv := &liveness{since: u.started}
	for {
		r, err := checkReady(ctx, u.c, lv)
		byName := map[string]*api.Host{}
		for _, h := range r.hosts {
			byName[h.Metadata.Name] = h
		}
		var ready []*api.Host
		var late []string
		for i := 1; i <= u.hosts; i++ {
			name := fmt.Sprintf("host-%d", i)
			h := byName[name]
			ok, why := hostReady(h, 1, lv)
			if err != nil {
				ok, why = false, err.Error()
			}
			if !ok {
				late = append(late, fmt.Sprintf("host %s %s; its log: %s%s", name, why, u.agentLog(i), logTail(u.agentLog(i), 3)))
				continue
			}
			ready = append(ready, h)
			if !said[name] {
				said[name] = true
				fmt.Fprintf(u.g.Stdout, "  %s ready (%d of %d)\n", name, len(said), u.hosts)
			}
		}
		if len(late) == 0 {
			return ready, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%d of %d hosts did not join within %s (--ready-timeout):\n  %s",
				len(late), u.hosts, u.readyTimeout, strings.Join(late, "\n  "))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (u *upRun) agentLog(i int) string { return filepath.Join(u.hostDir(i), "agent.log") }

// logTail is the end of a log file, to quote in an error: "", or its last
// n lines, indented, after a colon.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) == 0 || lines[0] == "" {
		return ""
	}
	lines = lines[max(0, len(lines)-n):]
	for i := range lines {
		lines[i] = cmdutil.Safe(lines[i])
	}
	return ", which ends:\n      " + strings.Join(lines, "\n      ")
}

// hostLines lists the hosts: how each runs VMs and what it offers them.
func (u *upRun) hostLines(hosts []*api.Host) string {
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, "    %-8s %s; offers VMs %s, %s\n", h.Metadata.Name, cmdutil.Safe(cmdutil.HostAccel(h)), plural(h.Status.CPUs, "CPU"), h.Status.MemoryBytes)
	}
	if note := u.capf.note; note != "" {
		fmt.Fprintf(&b, "    (%s)\n", note)
	}
	return b.String()
}

// capacityFlags are what each host of vdc up offers to VMs.
type capacityFlags struct {
	cpus   int
	memory string
	note   string // how the capacity was chosen, for the user
}

func (c *capacityFlags) add(cmd *cobra.Command) {
	cmd.Flags().IntVar(&c.cpus, "capacity-cpus", 0, "CPUs each host offers to VMs (default with real VMs: this machine's, shared among the hosts)")
	cmd.Flags().StringVar(&c.memory, "capacity-memory", "", "memory each host offers to VMs (default with real VMs: this machine's, shared among the hosts)")
}

// share settles each host's capacity. Real VMs of all the hosts run on
// this one machine: unless told, each host offers its share of the
// machine, or placement would admit VMs that cannot run. Simulated hosts
// are each the machine --sim-cpus and --sim-memory make.
func (c *capacityFlags) share(driver string, hosts int) error {
	if c.cpus < 0 {
		return fmt.Errorf("--capacity-cpus must be at least 1, got %d", c.cpus)
	}
	var mem int64
	if c.memory != "" {
		m, err := api.ParseSize(c.memory)
		if err != nil || m <= 0 {
			return fmt.Errorf("--capacity-memory %q: give a size such as 4GiB", c.memory)
		}
		mem = int64(m)
	}
	if driver != "qemu" || hosts == 0 {
		return nil
	}
	cpus, total := qemu.MachineCapacity()
	switch {
	case c.cpus > cpus:
		return fmt.Errorf("--capacity-cpus %d: this machine has %d CPUs", c.cpus, cpus)
	case mem > total:
		return fmt.Errorf("--capacity-memory %s: this machine has %s", api.Size(mem), api.Size(total))
	}
	share := fmt.Sprintf("this machine's %d CPUs and %s shared by %d hosts", cpus, api.Size(total), hosts)
	if c.cpus == 0 {
		c.cpus = max(1, cpus/hosts)
	}
	if mem == 0 {
		mem = total / int64(hosts)
	}
	c.memory = fmt.Sprint(mem) // in bytes: a rounded size could add up to more than the machine
	c.note = share + "; --capacity-cpus and --capacity-memory set each host's"
	return nil
}

// args are the flags to pass on to an agent process.
func (c *capacityFlags) args() []string {
	var a []string
	if c.cpus > 0 {
		a = append(a, "--capacity-cpus", fmt.Sprint(c.cpus))
	}
	if c.memory != "" {
		a = append(a, "--capacity-memory", c.memory)
	}
	return a
}

// networkLines say how the hosts are networked, in a lab.
func (u *upRun) networkLines() string {
	if u.lab == nil {
		return ""
	}
	return fmt.Sprintf("  network:       each host in its own namespace (%s .. %s) on bridge %s, %s;\n"+
		"                 switch %s carries %s as VXLAN %d with DHCP %s\n",
		u.lab.Namespace(1), u.lab.Namespace(u.hosts), u.lab.Bridge, u.lab.Subnet,
		client.DefaultSwitch, client.DefaultPortGroup, client.DefaultVNI, client.DefaultSubnet)
}
