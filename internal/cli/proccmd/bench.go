package proccmd

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/bench"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// The bench commands: flags in, internal/bench runs the benchmark (with
// its progress on stderr), the result out as text or -o json.

func NewBenchCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure vdc's performance"}
	cmd.AddCommand(newBenchAPICmd(g), newBenchBootCmd(g), newBenchMigrateCmd(g), newBenchHACmd(g), newBenchStorageCmd(g))
	return cmd
}

// printBench prints a result as JSON with -o json, else as text.
func printBench(g *cmdutil.Globals, res any, text func()) error {
	if g.JSONOutput() {
		enc := json.NewEncoder(g.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	text()
	return nil
}

func newBenchAPICmd(g *cmdutil.Globals) *cobra.Command {
	var o bench.APIOptions
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Create and power on many VMs through the real API on sim hosts, then list them",
		Long: `Start a 'vdc server' and one 'vdc agent --sim-hosts N' process (N simulated
hosts in one agent process, each joined with its own certificate and its
own agent API), then through the REST API create and power on --vms VMs with
--concurrency clients, and list them all repeatedly. Reports creates/s,
latencies (p50/p99) and the server's memory.`,
		Example: `  vdc bench api --vms 10000 --hosts 100 --concurrency 32`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.VMs < 1 || o.Hosts < 1 || o.Concurrency < 1 || o.Lists < 1 {
				return fmt.Errorf("--vms, --hosts, --concurrency and --lists must be at least 1")
			}
			o.Progress = g.Stderr
			res, err := bench.API(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printBench(g, res, func() {
				fmt.Fprintf(g.Stdout, `vdc bench api: %d VMs on %d sim hosts, %d concurrent clients
  create:        %6.0f VMs/s  (%.1f s)  latency p50 %.1f ms  p99 %.1f ms  errors %d
  power on:      %6.0f VMs/s  (%.1f s)  latency p50 %.1f ms  p99 %.1f ms  errors %d
  list all VMs:  p50 %.1f ms  p99 %.1f ms  (%.1f MiB of JSON)
  server CPU:    %.2f ms per create, %.2f ms per power-on (embedded etcd included)
  server memory: %.0f MiB RSS, peak %.0f MiB (embedded etcd included)
`, res.VMs, res.Hosts, res.Concurrency,
					res.CreatesPerSecond, res.CreateSeconds, res.CreateP50, res.CreateP99, res.CreateErrors,
					res.PowerOnsPerSecond, res.PowerOnSeconds, res.PowerOnP50, res.PowerOnP99, res.PowerOnErrors,
					res.ListP50, res.ListP99, float64(res.ListBytes)/(1<<20), res.ServerCPUPerCreateMs, res.ServerCPUPerPowerOnMs,
					res.ServerRSSMiB, res.ServerPeakRSSMiB)
			})
		},
	}
	cmd.Flags().IntVar(&o.VMs, "vms", 10000, "VMs to create and power on")
	cmd.Flags().IntVar(&o.Hosts, "hosts", 100, "simulated hosts")
	cmd.Flags().IntVar(&o.Concurrency, "concurrency", 32, "concurrent API clients")
	cmd.Flags().IntVar(&o.Lists, "lists", 50, "full VM lists to time")
	cmd.Flags().StringVar(&o.ServerDebugListen, "server-debug-listen", "", "serve the server's pprof profiles on this address while it runs")
	cmd.Flags().StringVar(&o.Dir, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func newBenchBootCmd(g *cmdutil.Globals) *cobra.Command {
	var o bench.BootOptions
	cmd := &cobra.Command{
		Use:   "boot",
		Short: "Time from VM start to the first guest-agent answer, vdc vs plain QEMU; agent memory with running VMs",
		Long: `Build the test guest, then:
  1. start it --runs times with a plain qemu-system-x86_64 command line and
     time each from the start of the process to the first answer of its
     qemu-guest-agent (pinged every 100 ms);
  2. start a 'vdc server' and a 'vdc agent --driver qemu' (guest agents
     pinged every 100 ms), make a VM from the test image and time
     'vm start' through the API until the VM's first guest-agent answer,
     --runs times;
  3. run --vms VMs at once and read the agent's memory (RSS).`,
		Example: `  vdc bench boot --runs 5 --vms 10`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Runs < 1 || o.VMs < 0 {
				return fmt.Errorf("--runs must be at least 1 and --vms at least 0")
			}
			o.Progress = g.Stderr
			res, err := bench.Boot(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printBench(g, res, func() {
				fmt.Fprintf(g.Stdout, `vdc bench boot: test guest under %s, %d runs each
  plain QEMU, start to first guest-agent answer: median %.0f ms (min %.0f)
  vdc vm start, to first guest-agent answer:     median %.0f ms (min %.0f)
  ratio vdc / plain:                             %.2f
  agent memory: %.1f MiB RSS idle, %.1f MiB with %d VMs running (each QEMU %.0f MiB); all %d guests answered %.1f s after start
`, res.Accel, res.Runs, res.PlainMedian, res.PlainMin, res.VdcMedian, res.VdcMin, res.Ratio,
					res.AgentIdleMiB, res.AgentRSSMiB, res.VMs, res.QEMURSSMiB, res.VMs, res.AllUpSeconds)
			})
		},
	}
	cmd.Flags().IntVar(&o.Runs, "runs", 5, "boots to time on each side")
	cmd.Flags().IntVar(&o.VMs, "vms", 10, "VMs to run at once for the agent's memory")
	cmd.Flags().StringVar(&o.Dir, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func newBenchHACmd(g *cmdutil.Globals) *cobra.Command {
	var o bench.HAOptions
	cmd := &cobra.Command{
		Use:   "ha",
		Short: "Kill sim hosts carrying many VMs and time HA's failover",
		Long: `Start a 'vdc server' and two 'vdc agent --sim-hosts' processes: one with the
hosts to fail, carrying every VM, the other with the rest. Turn HA on, create
and power on --vms VMs on the first group, then kill -9 that agent process (its
hosts die with it, their VMs' leases too) and time, for each VM, how long until
it runs again on another host: detection (the server declares the hosts
failed) plus the restarts.`,
		Example: `  vdc bench ha --vms 1000 --hosts 50 --failed-hosts 10
  vdc bench ha --detection 3s --heartbeat 1s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.VMs < 1 || o.FailedHosts < 1 || o.Hosts <= o.FailedHosts {
				return fmt.Errorf("need --vms ≥ 1 and --hosts > --failed-hosts ≥ 1")
			}
			o.Progress = g.Stderr
			res, err := bench.HA(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printBench(g, res, func() {
				fmt.Fprintf(g.Stdout, `vdc bench ha: %d VMs on %d of %d sim hosts, detection %s, heartbeat %s
  hosts declared failed:   %.1f s after the kill (the last of them)
  VMs running elsewhere:   p50 %.1f s  p99 %.1f s  last %.1f s after the kill (%d of %d)
  last restart:            %.1f s after its host was declared failed
`, res.VMs, res.FailedHosts, res.Hosts, o.Detection, o.Heartbeat, res.DetectedSeconds,
					res.RestartedP50, res.RestartedP99, res.RestartedMax, res.Restarted, res.VMs, res.AfterDetection)
			})
		},
	}
	cmd.Flags().IntVar(&o.VMs, "vms", 1000, "VMs on the hosts that fail")
	cmd.Flags().IntVar(&o.Hosts, "hosts", 50, "simulated hosts in all")
	cmd.Flags().IntVar(&o.FailedHosts, "failed-hosts", 10, "hosts that fail (they carry every VM)")
	cmd.Flags().DurationVar(&o.Detection, "detection", api.DefaultHAFailureDetection, "HA failure detection time")
	cmd.Flags().DurationVar(&o.Heartbeat, "heartbeat", 2*time.Second, "the server's heartbeat interval")
	cmd.Flags().StringVar(&o.Dir, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func newBenchMigrateCmd(g *cmdutil.Globals) *cobra.Command {
	var o bench.MigrateOptions
	var sizes []string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Live migration time and downtime, vdc vs plain QEMU, idle and dirtying guests",
		Long: `Build the test guest, then for each --memory size, idle and with a guest
that rewrites 64 MiB of its memory in a loop:
  1. plain QEMU: start the guest, start a second QEMU with -incoming, and
     migrate over loopback TCP with QMP (bandwidth uncapped, QEMU's default
     300 ms downtime limit, auto-converge for the dirtying guest); time
     from 'migrate' to 'completed', and QEMU's own total and downtime;
  2. vdc: a server and two agents on this machine; 'vm migrate' between
     them, over TLS (the default) and --insecure, timed from the request
     to the finished task, with QEMU's total and downtime from the result.
Each is run --runs times; medians are reported.`,
		Example: `  vdc bench migrate --runs 3 --memory 256MiB,1GiB`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Runs < 1 {
				return fmt.Errorf("--runs must be at least 1")
			}
			o.Memory = nil
			for _, s := range sizes {
				m, err := api.ParseSize(s)
				if err != nil || m < bench.MinMigrateMemory {
					return fmt.Errorf("--memory %q: want a size of at least %s", s, bench.MinMigrateMemory)
				}
				o.Memory = append(o.Memory, m)
			}
			o.Progress = g.Stderr
			res, err := bench.Migrate(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printBench(g, res, func() { printMigrateBench(g, res) })
		},
	}
	cmd.Flags().IntVar(&o.Runs, "runs", 3, "migrations to time for each guest and side")
	cmd.Flags().StringSliceVar(&sizes, "memory", []string{"256MiB", "1GiB"}, "guest memory sizes")
	cmd.Flags().StringVar(&o.Dir, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func printMigrateBench(g *cmdutil.Globals, res *bench.MigrateResult) {
	fmt.Fprintf(g.Stdout, "vdc bench migrate: test guest under %s, medians of %d runs, times in ms\n", res.Accel, res.Runs)
	fmt.Fprintln(g.Stdout, "QEMU's total / downtime, then from the request to the guest running on the target (plain: 'migrate' to 'running')")
	fmt.Fprintf(g.Stdout, "%-17s %-18s %-18s %-18s %-18s %s\n", "guest", "plain TLS", "vdc TLS", "plain", "vdc --insecure", "ratio TLS, insecure")
	for _, r := range res.Rows {
		cell := func(m bench.MigrateTimes) string {
			return fmt.Sprintf("%.0f/%.0f -> %.0f", m.Total, m.Downtime, m.EndToEnd)
		}
		fmt.Fprintf(g.Stdout, "%-17s %-18s %-18s %-18s %-18s %.2f, %.2f\n", r.Case, cell(r.PlainTLS), cell(r.Vdc),
			cell(r.Plain), cell(r.Insecure), r.Ratio, r.RatioInsecure)
	}
	fmt.Fprintln(g.Stdout, "vdc's task time, split: prepare (target copy ready) + QEMU total + switch-over, TLS / insecure:")
	for _, r := range res.Rows {
		fmt.Fprintf(g.Stdout, "  %-20s %4.0f + %4.0f + %4.0f  /  %4.0f + %4.0f + %4.0f\n", r.Case,
			r.Vdc.Prepare, r.Vdc.Total, r.Vdc.Switch, r.Insecure.Prepare, r.Insecure.Total, r.Insecure.Switch)
	}
}

func newBenchStorageCmd(g *cmdutil.Globals) *cobra.Command {
	var o bench.StorageOptions
	var data, large string
	cmd := &cobra.Command{
		Use:   "storage",
		Short: "Linked clone time for small and large bases, full clone throughput vs qemu-img convert and cp --sparse, fresh thin disk size",
		Long: `Start a 'vdc server' and a 'vdc agent --driver qemu', then:
  1. make two templates whose disks hold --data of written data: one of
     1 GiB and one of --large (100 GiB) virtual size; time
     'vm create --from-template T --linked' (request to finished task)
     --runs times on each;
  2. time a full clone of the 1 GiB VM, and, on the same file, plain
     'qemu-img convert -O qcow2' and 'cp --sparse=always' (each from a
     clean page cache, until its data is synced to disk);
  3. create a VM with a fresh thin disk of --large and read what the host
     measures it takes.`,
		Example: "  vdc bench storage --runs 10",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.Runs < 1 {
				return fmt.Errorf("--runs must be at least 1")
			}
			var err error
			if o.Data, err = api.ParseSize(data); err != nil {
				return fmt.Errorf("--data: %w", err)
			}
			if o.Large, err = api.ParseSize(large); err != nil {
				return fmt.Errorf("--large: %w", err)
			}
			o.Progress = g.Stderr
			res, err := bench.Storage(cmd.Context(), o)
			if err != nil {
				return err
			}
			return printBench(g, res, func() {
				fmt.Fprintf(g.Stdout, `vdc bench storage: %d runs each
  linked clone, 1 GiB base:              median %.0f ms (max %.0f)
  linked clone, %s base:            median %.0f ms (max %.0f)
  full clone of %s of data:          median %.0f ms (%.0f MiB/s)
  qemu-img convert of the same file:    median %.0f ms   ratio vdc / qemu-img %.2f
  cp --sparse=always of the same file:  median %.0f ms   ratio vdc / cp %.2f
  a fresh %s thin disk takes:       %s
`, res.Runs, res.LinkedSmallMs, res.LinkedSmallMax, large, res.LinkedLargeMs, res.LinkedLargeMax,
					api.Size(res.DataBytes), res.FullCloneMs, res.FullCloneMiBps, res.QemuImgMs, res.RatioQemuImg, res.CpSparseMs, res.RatioCp,
					large, api.Size(res.FreshThinBytes))
			})
		},
	}
	cmd.Flags().IntVar(&o.Runs, "runs", 5, "clones to time for each measure")
	cmd.Flags().StringVar(&data, "data", "1GiB", "data written into each base disk")
	cmd.Flags().StringVar(&large, "large", "100GiB", "virtual size of the large base and of the fresh thin disk")
	cmd.Flags().StringVar(&o.Dir, "dir", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}
