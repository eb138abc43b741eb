package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func newBenchCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "bench", Short: "Measure vdc's performance"}
	cmd.AddCommand(newBenchAPICmd(g), newBenchBootCmd(g), newBenchMigrateCmd(g), newBenchHACmd(g), newBenchStorageCmd(g))
	return cmd
}

type benchAPI struct {
	vms, hosts, conc int
	keep             string
	lists            int
	debug            string
}

// benchResult is what `vdc bench api` reports.
type benchResult struct {
	VMs               int     `json:"vms"`
	Hosts             int     `json:"hosts"`
	Concurrency       int     `json:"concurrency"`
	CreateSeconds     float64 `json:"createSeconds"`
	CreatesPerSecond  float64 `json:"createsPerSecond"`
	CreateP50         float64 `json:"createP50Ms"` // from request to finished task
	CreateP99         float64 `json:"createP99Ms"`
	CreateErrors      int64   `json:"createErrors"`
	PowerOnSeconds    float64 `json:"powerOnSeconds"`
	PowerOnsPerSecond float64 `json:"powerOnsPerSecond"`
	PowerOnP50        float64 `json:"powerOnP50Ms"`
	PowerOnP99        float64 `json:"powerOnP99Ms"`
	PowerOnErrors     int64   `json:"powerOnErrors"`
	ListP50           float64 `json:"listP50Ms"` // full list of every VM, read in full
	ListP99           float64 `json:"listP99Ms"`
	ListBytes         int     `json:"listBytes"`
	ServerRSSMiB      float64 `json:"serverRssMiB"`
	ServerPeakRSSMiB  float64 `json:"serverPeakRssMiB"`
}

func newBenchAPICmd(g *globals) *cobra.Command {
	var b benchAPI
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
			if b.vms < 1 || b.hosts < 1 || b.conc < 1 || b.lists < 1 {
				return fmt.Errorf("--vms, --hosts, --concurrency and --lists must be at least 1")
			}
			res, err := b.run(cmd.Context(), g)
			if err != nil {
				return err
			}
			if g.output == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(g.stdout, `vdc bench api: %d VMs on %d sim hosts, %d concurrent clients
  create:        %6.0f VMs/s  (%.1f s)  latency p50 %.1f ms  p99 %.1f ms  errors %d
  power on:      %6.0f VMs/s  (%.1f s)  latency p50 %.1f ms  p99 %.1f ms  errors %d
  list all VMs:  p50 %.1f ms  p99 %.1f ms  (%.1f MiB of JSON)
  server memory: %.0f MiB RSS, peak %.0f MiB (embedded etcd included)
`, res.VMs, res.Hosts, res.Concurrency,
				res.CreatesPerSecond, res.CreateSeconds, res.CreateP50, res.CreateP99, res.CreateErrors,
				res.PowerOnsPerSecond, res.PowerOnSeconds, res.PowerOnP50, res.PowerOnP99, res.PowerOnErrors,
				res.ListP50, res.ListP99, float64(res.ListBytes)/(1<<20), res.ServerRSSMiB, res.ServerPeakRSSMiB)
			return nil
		},
	}
	cmd.Flags().IntVar(&b.vms, "vms", 10000, "VMs to create and power on")
	cmd.Flags().IntVar(&b.hosts, "hosts", 100, "simulated hosts")
	cmd.Flags().IntVar(&b.conc, "concurrency", 32, "concurrent API clients")
	cmd.Flags().IntVar(&b.lists, "lists", 50, "full VM lists to time")
	cmd.Flags().StringVar(&b.debug, "server-debug-listen", "", "serve the server's pprof profiles on this address while it runs")
	cmd.Flags().StringVar(&b.keep, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func (b *benchAPI) run(ctx context.Context, g *globals) (*benchResult, error) {
	dir, cleanup, err := benchDir(b.keep, "vdc-bench")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var srvArgs []string
	if b.debug != "" {
		srvArgs = append(srvArgs, "--debug-listen", b.debug)
	}
	dc, err := startBenchDC(ctx, dir, srvArgs...)
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	c := dc.c
	// Room for every VM: the bench measures the control plane, not placement refusals.
	perHost := (b.vms + b.hosts - 1) / b.hosts
	if _, err := dc.agent(ctx, "sim", b.hosts, "--driver", "sim", "--sim-hosts", strconv.Itoa(b.hosts),
		"--sim-cpus", strconv.Itoa(max(16, perHost)), "--sim-memory", api.Size(int64(perHost+16)<<30).String()); err != nil {
		return nil, err
	}
	fmt.Fprintf(g.stderr, "waiting for %d sim hosts...\n", b.hosts)
	if err := waitConnected(ctx, c, b.hosts, 2*time.Minute); err != nil {
		return nil, err
	}
	res := &benchResult{VMs: b.vms, Hosts: b.hosts, Concurrency: b.conc}
	name := func(i int) string { return fmt.Sprintf("bench-%05d", i) }
	fmt.Fprintf(g.stderr, "creating %d VMs...\n", b.vms)
	created := make([]bool, b.vms)
	createTime, creates, createErrs := b.parallel(ctx, g, func(i int) error {
		t, err := c.CreateVM(ctx, api.VMCreateRequest{Name: name(i), CPUs: 1, Memory: api.MustSize("256MiB"), Disks: []api.DiskRequest{{Size: api.MustSize("10GiB")}}})
		if err == nil {
			_, err = c.Wait(ctx, t)
		}
		created[i] = err == nil
		return err
	})
	fmt.Fprintf(g.stderr, "powering on %d VMs...\n", b.vms)
	powerTime, powers, powerErrs := b.parallel(ctx, g, func(i int) error {
		if !created[i] {
			return nil
		}
		t, err := c.Power(ctx, name(i), api.PowerRequest{Action: api.ActionStart})
		if err == nil {
			_, err = c.Wait(ctx, t)
		}
		return err
	})
	res.CreateSeconds, res.PowerOnSeconds = createTime.Seconds(), powerTime.Seconds()
	res.CreatesPerSecond = float64(b.vms) / createTime.Seconds()
	res.PowerOnsPerSecond = float64(b.vms) / powerTime.Seconds()
	res.CreateErrors, res.PowerOnErrors = createErrs, powerErrs
	res.CreateP50, res.CreateP99 = percentiles(creates)
	res.PowerOnP50, res.PowerOnP99 = percentiles(powers)
	fmt.Fprintf(g.stderr, "listing %d VMs %d times...\n", b.vms, b.lists)
	lists := make([]time.Duration, b.lists)
	for i := range lists {
		t0 := time.Now()
		var raw json.RawMessage
		if err := c.Do(ctx, client.Request{Method: "GET", Path: "/vms"}, &raw); err != nil {
			return nil, fmt.Errorf("list VMs: %w", err)
		}
		lists[i] = time.Since(t0) // the API's answer, read in full; decoding into Go types is the caller's
		var l api.List[*api.VM]
		if err := json.Unmarshal(raw, &l); err != nil {
			return nil, err
		}
		if want := b.vms - int(createErrs); len(l.Items) != want && i == 0 {
			fmt.Fprintf(g.stderr, "warning: listed %d VMs, expected %d\n", len(l.Items), want)
		}
		res.ListBytes = len(raw)
	}
	res.ListP50, res.ListP99 = percentiles(lists)
	res.ServerRSSMiB, res.ServerPeakRSSMiB = procMemory(dc.srv.Process.Pid)
	return res, nil
}

// parallel runs op for 0..vms-1 on --concurrency workers and returns the
// wall time, each call's latency and the number of failures.
func (b *benchAPI) parallel(ctx context.Context, g *globals, op func(i int) error) (time.Duration, []time.Duration, int64) {
	lat := make([]time.Duration, b.vms)
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < b.conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.vms || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(i)
				lat[i] = time.Since(t0)
				if err != nil && errs.Add(1) <= 3 {
					fmt.Fprintf(g.stderr, "vm %d: %v\n", i, err)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), lat, errs.Load()
}

func percentiles(d []time.Duration) (p50, p99 float64) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// procMemory reads a process's resident and peak resident memory in MiB.
func procMemory(pid int) (rss, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// spawn starts a vdc subcommand with its output in a log file; it dies with us.
func spawn(exe, logPath string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start vdc %s: %w", args[0], err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return cmd, nil
}

func stopProc(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// waitForServer waits for a server's client config and API.
func waitForServer(ctx context.Context, cfgPath string) (*client.Client, error) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if c, err := client.FromFile(cfgPath); err == nil {
			if _, err := c.Version(ctx); err == nil {
				return c, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("server did not come up within a minute (config %s)", cfgPath)
}

func waitConnected(ctx context.Context, c *client.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		hs, err := client.List[*api.Host](ctx, c, api.KindHost, nil)
		up := 0
		if err == nil {
			for _, h := range hs {
				if h.Status.Connection == api.HostConnected && len(h.Status.Datastores) > 0 {
					up++
				}
			}
		}
		if up >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d hosts connected after %s", up, n, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
