package proccmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/hypervisor/sim"
)

type driverFlags struct {
	driver    string
	simCPUs   int
	simMemory string
	accel     string
	guestPoll time.Duration
	mergeBW   string
}

func (d *driverFlags) add(cmd *cobra.Command, def string) {
	cmd.Flags().StringVar(&d.driver, "driver", def, "hypervisor driver: qemu (real VMs) or sim (simulated hosts)")
	cmd.Flags().StringVar(&d.accel, "accel", "", "qemu: force kvm or tcg (default: KVM when a probe shows it works)")
	cmd.Flags().DurationVar(&d.guestPoll, "guest-poll", 5*time.Second, "qemu: how often each VM's guest agent is pinged")
	cmd.Flags().StringVar(&d.mergeBW, "merge-bandwidth", "", "qemu: cap snapshot merges of running VMs, per second (e.g. 100MiB), so that they leave the disks' bandwidth to the guests")
	cmd.Flags().IntVar(&d.simCPUs, "sim-cpus", sim.DefaultCPUs, "CPUs of a simulated host")
	cmd.Flags().StringVar(&d.simMemory, "sim-memory", api.Size(sim.DefaultMemoryBytes).String(), "memory of a simulated host")
}

// args are the flags to pass on to an agent process.
func (d *driverFlags) args() []string {
	a := []string{"--driver", d.driver, "--sim-cpus", fmt.Sprint(d.simCPUs), "--sim-memory", d.simMemory}
	if d.accel != "" {
		a = append(a, "--accel", d.accel)
	}
	if d.mergeBW != "" {
		a = append(a, "--merge-bandwidth", d.mergeBW)
	}
	return append(a, "--guest-poll", d.guestPoll.String())
}

// pick chooses the driver when none was given: qemu when it is installed.
func (d *driverFlags) pick(w io.Writer) {
	if d.driver != "" {
		return
	}
	if err := qemu.Available(""); err != nil {
		d.driver = "sim"
		fmt.Fprintf(w, "QEMU is not available (%v): using the sim driver (simulated VMs).\n"+
			"For real VMs: apt-get install qemu-system-x86 qemu-utils, then vdc up --driver qemu\n", err)
		return
	}
	d.driver = "qemu"
	fmt.Fprintln(w, "QEMU is installed: hosts run real VMs (--driver sim for simulated ones).")
}

func (d *driverFlags) check() error {
	switch d.driver {
	case "sim":
	case "qemu":
		if err := qemu.Available(""); err != nil {
			return fmt.Errorf("--driver qemu: %w", err)
		}
	default:
		return fmt.Errorf("--driver %q: want qemu or sim", d.driver)
	}
	if d.accel != "" && d.accel != "kvm" && d.accel != "tcg" {
		return fmt.Errorf("--accel %q: want kvm or tcg", d.accel)
	}
	if d.simCPUs < 1 {
		return fmt.Errorf("--sim-cpus must be at least 1, got %d", d.simCPUs)
	}
	if _, err := api.ParseSize(d.simMemory); err != nil {
		return fmt.Errorf("--sim-memory: %w", err)
	}
	return nil
}

func (d *driverFlags) new(ctx context.Context, dataDir, host string, log *slog.Logger) (hypervisor.Driver, error) {
	if err := d.check(); err != nil {
		return nil, err
	}
	if d.driver == "qemu" {
		var bw api.Size
		if d.mergeBW != "" {
			var err error
			if bw, err = api.ParseSize(d.mergeBW); err != nil || bw < 1<<20 {
				return nil, fmt.Errorf("--merge-bandwidth: give at least 1MiB (per second), got %q", d.mergeBW)
			}
		}
		return qemu.New(ctx, qemu.Options{Accel: d.accel, GuestPoll: d.guestPoll, TLSDir: agent.QEMUTLSDir(dataDir), Host: host, Log: log,
			MergeBandwidth: int64(bw)})
	}
	mem, _ := api.ParseSize(d.simMemory)
	return sim.New(sim.Options{CPUs: d.simCPUs, MemoryBytes: int64(mem), Host: host, Logger: log}), nil
}

// agentLong is the help text of vdc agent.
const agentLong = `Run the host agent. The first start joins the datacenter with a join token
(from 'vdc host token create'); the host's certificate and identity are then
kept in --data and later starts need no token. VMs keep running when the agent
stops; a restarted agent re-attaches to them.

Give the token in a file (--join-token-file, best mode 0600) or in the
environment (VDC_JOIN_TOKEN): --join-token works too, but every user of the
machine sees it in 'ps'. A token from 'vdc host replace NAME' joins this
machine again as host NAME, keeping its ID and VMs; the agent uses it when its
certificate has expired or the server refuses it.

The host's certificate is short-lived (the server's --host-cert-ttl); the agent
renews it on its own past two thirds of its life.

The host offers VMs the whole machine's CPUs and memory, unless
--capacity-cpus and --capacity-memory give it a part: hosts that share one
machine (as under vdc up, which sets them) must share its capacity, or
placement admits VMs that cannot run.

--sim-hosts N runs N simulated hosts in this one process (NAME-1..NAME-N, data
in DATA/NAME-i), for scale tests and planning.`

// agentFlags are the flags of vdc agent.
type agentFlags struct {
	cfg       agent.Config
	df        driverFlags
	lf        logFlags
	simHosts  int
	capMemory string
}

func NewAgentCmd(g *cmdutil.Globals) *cobra.Command {
	a := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the host agent that runs this machine's VMs",
		Long:  agentLong,
		Example: `  vdc agent --server https://10.0.0.1:7443 --join-token-file /root/join-token --data /var/lib/vdc-agent --name esx1
  VDC_JOIN_TOKEN=vdc1.xxxx.yyyy vdc agent --server https://10.0.0.1:7443 --data /var/lib/vdc-agent --name esx1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.run(cmd, g) },
	}
	a.add(cmd)
	return cmd
}

// add defines the flags of vdc agent on cmd.
func (a *agentFlags) add(cmd *cobra.Command) {
	cfg := &a.cfg
	cmd.Flags().StringVar(&cfg.ServerURL, "server", "", "management server URL, e.g. https://10.0.0.1:7443")
	cmd.Flags().StringVar(&cfg.JoinTokenFile, "join-token-file", "", "file holding the join token (needed the first time only, or after 'vdc host replace')")
	cmd.Flags().StringVar(&cfg.JoinToken, "join-token", "", "join token; visible to every user in 'ps': prefer --join-token-file or "+joinTokenEnv)
	cmd.Flags().StringVar(&cfg.DataDir, "data", "./vdc-agent", "data directory")
	cmd.Flags().StringVar(&cfg.Name, "name", "", "host name (default: the hostname)")
	cmd.Flags().StringVar(&cfg.Listen, "listen", "", "agent API address (default :7444, or 127.0.0.1:0 when the server is on loopback)")
	cmd.Flags().StringVar(&cfg.Advertise, "advertise", "", "address the server should dial (default: derived from --listen)")
	cmd.Flags().IntVar(&a.simHosts, "sim-hosts", 0, "run this many simulated hosts in one process")
	cmd.Flags().IntVar(&cfg.CapacityCPUs, "capacity-cpus", 0, "CPUs this host offers to VMs (default: all of the machine's)")
	cmd.Flags().StringVar(&a.capMemory, "capacity-memory", "", "memory this host offers to VMs, e.g. 8GiB (default: all of the machine's)")
	addMaxConnsFlag(cmd, &cfg.Limits.MaxConnsPerIP)
	a.df.add(cmd, "")
	a.lf.add(cmd)
	_ = cmd.MarkFlagRequired("server")
}

// run checks the flags and runs the agent, or the simulated hosts.
func (a *agentFlags) run(cmd *cobra.Command, g *cmdutil.Globals) error {
	cfg, df := &a.cfg, &a.df
	if err := checkMaxConns(cfg.Limits.MaxConnsPerIP); err != nil {
		return err
	}
	log, closeLog, err := a.lf.logger(os.Stderr)
	if err != nil {
		return err
	}
	defer closeLog()
	if err := joinTokenSource(cfg, log); err != nil {
		return err
	}
	if a.capMemory != "" {
		m, err := api.ParseSize(a.capMemory)
		if err != nil || m <= 0 {
			return fmt.Errorf("--capacity-memory %q: give a size such as 4GiB", a.capMemory)
		}
		cfg.CapacityMemory = int64(m)
	}
	if cfg.CapacityCPUs < 0 {
		return fmt.Errorf("--capacity-cpus must be at least 1, got %d", cfg.CapacityCPUs)
	}
	if a.simHosts > 0 && df.driver == "" {
		df.driver = "sim"
	}
	df.pick(g.Stderr)
	if err := df.check(); err != nil {
		return err
	}
	ctx, stop := signalContext(cmd.Context())
	defer stop()
	if a.simHosts <= 0 {
		return runAgent(ctx, *cfg, df, log)
	}
	return a.runSimHosts(ctx, stop, log)
}

// runSimHosts runs --sim-hosts simulated hosts in this process, stopping
// them all when one fails.
func (a *agentFlags) runSimHosts(ctx context.Context, stop func(), log *slog.Logger) error {
	cfg, df := a.cfg, &a.df
	if df.driver != "sim" {
		return errors.New("--sim-hosts needs --driver sim")
	}
	if cfg.Name == "" {
		cfg.Name = "sim"
	}
	var wg sync.WaitGroup
	errs := make(chan error, a.simHosts)
	for i := 1; i <= a.simHosts; i++ {
		c := cfg
		c.Name = fmt.Sprintf("%s-%d", cfg.Name, i)
		c.DataDir = filepath.Join(cfg.DataDir, c.Name)
		c.Advertise = ""
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := runAgent(ctx, c, df, log); err != nil {
				errs <- fmt.Errorf("host %s: %w", c.Name, err)
				stop()
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

// joinTokenEnv is the environment variable that may carry a join token.
const joinTokenEnv = "VDC_JOIN_TOKEN"

// joinTokenSource settles where the join token comes from: the file, the
// environment, or (with a warning) the command line.
func joinTokenSource(cfg *agent.Config, log *slog.Logger) error {
	if cfg.JoinToken != "" && cfg.JoinTokenFile != "" {
		return errors.New("give either --join-token-file or --join-token, not both")
	}
	if cfg.JoinToken != "" {
		log.Warn("--join-token shows the token to every user of this machine (ps, /proc): prefer --join-token-file or " + joinTokenEnv)
		return nil
	}
	if cfg.JoinTokenFile != "" {
		fi, err := os.Stat(cfg.JoinTokenFile)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("--join-token-file: %w", err)
		}
		// A joined host does not need it: a missing file is fine until then.
		if err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the join token file can be read by other users; make it mode 0600", "file", cfg.JoinTokenFile, "mode", fi.Mode().Perm())
		}
		return nil
	}
	cfg.JoinToken = os.Getenv(joinTokenEnv)
	// Not for the QEMU processes the agent starts.
	return os.Unsetenv(joinTokenEnv)
}

func runAgent(ctx context.Context, cfg agent.Config, df *driverFlags, log *slog.Logger) error {
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	drv, err := df.new(ctx, cfg.DataDir, cfg.Name, log)
	if err != nil {
		return err
	}
	cfg.Driver, cfg.Log = drv, log
	a, err := agent.New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

func collect(ch <-chan error) []error {
	var out []error
	for e := range ch {
		out = append(out, e)
	}
	return out
}
