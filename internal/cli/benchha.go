package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

type benchHA struct {
	vms, hosts, failed int
	detection          time.Duration
	heartbeat          time.Duration
	keep               string
}

// benchHAResult is what `vdc bench ha` reports. Times are from the
// moment the failed hosts' agent process was killed.
type benchHAResult struct {
	VMs             int     `json:"vms"`
	Hosts           int     `json:"hosts"`
	FailedHosts     int     `json:"failedHosts"`
	DetectionSet    float64 `json:"detectionSetSeconds"`
	Heartbeat       float64 `json:"heartbeatSeconds"`
	DetectedSeconds float64 `json:"detectedSeconds"` // the last failed host declared failed
	RestartedP50    float64 `json:"restartedP50Seconds"`
	RestartedP99    float64 `json:"restartedP99Seconds"`
	RestartedMax    float64 `json:"restartedMaxSeconds"`
	// AfterDetection: the last VM running again, from its host's failure.
	AfterDetection float64 `json:"lastRestartAfterDetectionSeconds"`
	Restarted      int     `json:"restarted"`
}

func newBenchHACmd(g *globals) *cobra.Command {
	var b benchHA
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
			if b.vms < 1 || b.failed < 1 || b.hosts <= b.failed {
				return fmt.Errorf("need --vms ≥ 1 and --hosts > --failed-hosts ≥ 1")
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
			fmt.Fprintf(g.stdout, `vdc bench ha: %d VMs on %d of %d sim hosts, detection %s, heartbeat %s
  hosts declared failed:   %.1f s after the kill (the last of them)
  VMs running elsewhere:   p50 %.1f s  p99 %.1f s  last %.1f s after the kill (%d of %d)
  last restart:            %.1f s after its host was declared failed
`, res.VMs, res.FailedHosts, res.Hosts, b.detection, b.heartbeat, res.DetectedSeconds,
				res.RestartedP50, res.RestartedP99, res.RestartedMax, res.Restarted, res.VMs, res.AfterDetection)
			return nil
		},
	}
	cmd.Flags().IntVar(&b.vms, "vms", 1000, "VMs on the hosts that fail")
	cmd.Flags().IntVar(&b.hosts, "hosts", 50, "simulated hosts in all")
	cmd.Flags().IntVar(&b.failed, "failed-hosts", 10, "hosts that fail (they carry every VM)")
	cmd.Flags().DurationVar(&b.detection, "detection", api.DefaultHAFailureDetection, "HA failure detection time")
	cmd.Flags().DurationVar(&b.heartbeat, "heartbeat", 2*time.Second, "the server's heartbeat interval")
	cmd.Flags().StringVar(&b.keep, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func (b *benchHA) run(ctx context.Context, g *globals) (*benchHAResult, error) {
	dir, cleanup, err := benchDir(b.keep, "vdc-bench-ha")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dc, err := startBenchDC(ctx, dir, "--heartbeat-interval", b.heartbeat.String())
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	c := dc.c
	// Room for every VM on the hosts that stay.
	perHost := b.vms/(b.hosts-b.failed) + 8
	simArgs := func(n int) []string {
		return []string{"--driver", "sim", "--sim-hosts", strconv.Itoa(n), "--sim-cpus", strconv.Itoa(max(16, perHost)),
			"--sim-memory", api.Size(int64(perHost+16) << 30).String()}
	}
	victim, err := dc.agent(ctx, "fail", b.failed, simArgs(b.failed)...)
	if err != nil {
		return nil, err
	}
	if _, err := dc.agent(ctx, "stay", b.hosts-b.failed, simArgs(b.hosts-b.failed)...); err != nil {
		return nil, err
	}
	fmt.Fprintf(g.stderr, "waiting for %d sim hosts...\n", b.hosts)
	if err := waitConnected(ctx, c, b.hosts, 2*time.Minute); err != nil {
		return nil, err
	}
	u := api.ClusterHAUpdate{Enabled: ptrTo(true), FailureDetectionSeconds: ptrTo(int(b.detection / time.Second))}
	if t, err := c.Update(ctx, api.KindCluster, upCluster, api.ClusterUpdateRequest{HA: &u}, 0); err != nil {
		return nil, fmt.Errorf("turn HA on: %w", err)
	} else if _, err := c.Wait(ctx, t); err != nil {
		return nil, fmt.Errorf("turn HA on: %w", err)
	}
	fmt.Fprintf(g.stderr, "creating and powering on %d VMs on %d hosts...\n", b.vms, b.failed)
	creator := &benchAPI{vms: b.vms, conc: 32}
	_, _, errs := creator.parallel(ctx, g, func(i int) error {
		t, err := c.CreateVM(ctx, api.VMCreateRequest{Name: fmt.Sprintf("ha-%05d", i), CPUs: 1, Memory: api.MustSize("256MiB"),
			Host: fmt.Sprintf("fail-%d", i%b.failed+1), Disks: []api.DiskRequest{{Size: api.MustSize("10GiB")}}, PowerOn: true})
		if err == nil {
			_, err = c.Wait(ctx, t)
		}
		return err
	})
	if errs > 0 {
		return nil, fmt.Errorf("%d VMs could not be created", errs)
	}
	time.Sleep(2 * b.heartbeat) // the hosts know their HA settings
	fmt.Fprintf(g.stderr, "killing the agent of %d hosts...\n", b.failed)
	t0 := time.Now()
	if err := victim.Process.Kill(); err != nil {
		return nil, err
	}
	res := &benchHAResult{VMs: b.vms, Hosts: b.hosts, FailedHosts: b.failed, DetectionSet: b.detection.Seconds(), Heartbeat: b.heartbeat.Seconds()}
	back := map[string]time.Duration{}
	var lastFailed time.Time
	deadline := t0.Add(b.detection + 3*time.Minute)
	for len(back) < b.vms && time.Now().Before(deadline) {
		vms, err := client.List[*api.VM](ctx, c, api.KindVM, nil)
		if err != nil {
			return nil, err
		}
		now := time.Since(t0)
		for _, vm := range vms {
			if _, seen := back[vm.Metadata.Name]; !seen && !strings.HasPrefix(vm.Spec.Host.Name, "fail-") && vm.Status.PowerState == api.PowerOn {
				back[vm.Metadata.Name] = now
			}
		}
		if lastFailed.IsZero() {
			hs, err := client.List[*api.Host](ctx, c, api.KindHost, nil)
			if err == nil {
				failed, at := 0, time.Time{}
				for _, h := range hs {
					if !h.Status.FailedAt.IsZero() {
						failed++
						if h.Status.FailedAt.After(at) {
							at = h.Status.FailedAt
						}
					}
				}
				if failed == b.failed {
					lastFailed = at
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	var times []time.Duration
	for _, d := range back {
		times = append(times, d)
		res.RestartedMax = max(res.RestartedMax, d.Seconds())
	}
	res.Restarted = len(times)
	if len(times) > 0 {
		p50, p99 := percentiles(times)
		res.RestartedP50, res.RestartedP99 = p50/1000, p99/1000
	}
	if !lastFailed.IsZero() {
		res.DetectedSeconds = lastFailed.Sub(t0).Seconds()
		res.AfterDetection = res.RestartedMax - res.DetectedSeconds
	}
	if res.Restarted < b.vms {
		return res, fmt.Errorf("only %d of %d VMs ran again within %s", res.Restarted, b.vms, deadline.Sub(t0).Round(time.Second))
	}
	return res, nil
}
