package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// HAOptions are the settings of HA.
type HAOptions struct {
	VMs         int           // VMs on the hosts that fail
	Hosts       int           // simulated hosts in all
	FailedHosts int           // hosts that fail (they carry every VM)
	Detection   time.Duration // HA failure detection time
	Heartbeat   time.Duration // the server's heartbeat interval
	Dir         string        // keep the data here (default: a temp dir, removed)
	Progress    io.Writer     // progress lines (nil: none)
}

// HAResult is what `vdc bench ha` reports. Times are from the moment the
// failed hosts' agent process was killed.
type HAResult struct {
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

// HA starts a `vdc server` and two `vdc agent --sim-hosts` processes: one
// with the hosts to fail, carrying every VM, the other with the rest. It
// turns HA on, creates and powers on o.VMs VMs on the first group, then
// kills that agent process (its hosts die with it, their VMs' leases too)
// and times, for each VM, how long until it runs again on another host:
// detection (the server declares the hosts failed) plus the restarts.
func HA(ctx context.Context, o HAOptions) (*HAResult, error) {
	if o.VMs < 1 || o.FailedHosts < 1 || o.Hosts <= o.FailedHosts {
		return nil, errors.New("bench ha: need VMs ≥ 1 and hosts > failed hosts ≥ 1")
	}
	w := progress(o.Progress)
	dir, cleanup, err := dataDir(o.Dir, "vdc-bench-ha")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	dc, err := startDC(ctx, dir, "--heartbeat-interval", o.Heartbeat.String())
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	victim, err := haSetup(ctx, w, dc, o)
	if err != nil {
		return nil, err
	}
	time.Sleep(2 * o.Heartbeat) // the hosts know their HA settings
	fmt.Fprintf(w, "killing the agent of %d hosts...\n", o.FailedHosts)
	t0 := time.Now()
	if err := victim.Process.Kill(); err != nil {
		return nil, err
	}
	res := &HAResult{VMs: o.VMs, Hosts: o.Hosts, FailedHosts: o.FailedHosts, DetectionSet: o.Detection.Seconds(), Heartbeat: o.Heartbeat.Seconds()}
	deadline := t0.Add(o.Detection + 3*time.Minute)
	back, lastFailed, err := watchFailover(ctx, dc.c, o, t0, deadline)
	if err != nil {
		return nil, err
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
	if res.Restarted < o.VMs {
		return res, fmt.Errorf("only %d of %d VMs ran again within %s", res.Restarted, o.VMs, deadline.Sub(t0).Round(time.Second))
	}
	return res, nil
}

// haSetup starts the two agents, turns HA on and runs the VMs on the
// hosts that fail; it returns the agent process to kill.
func haSetup(ctx context.Context, w io.Writer, dc *datacenter, o HAOptions) (*exec.Cmd, error) {
	c := dc.c
	// Room for every VM on the hosts that stay.
	perHost := o.VMs/(o.Hosts-o.FailedHosts) + 8
	simArgs := func(n int) []string {
		return []string{"--driver", "sim", "--sim-hosts", strconv.Itoa(n), "--sim-cpus", strconv.Itoa(max(16, perHost)),
			"--sim-memory", api.Size(int64(perHost+16) << 30).String()}
	}
	victim, err := dc.agent(ctx, "fail", o.FailedHosts, simArgs(o.FailedHosts)...)
	if err != nil {
		return nil, err
	}
	if _, err := dc.agent(ctx, "stay", o.Hosts-o.FailedHosts, simArgs(o.Hosts-o.FailedHosts)...); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "waiting for %d sim hosts...\n", o.Hosts)
	if err := waitConnected(ctx, c, o.Hosts, 2*time.Minute); err != nil {
		return nil, err
	}
	u := api.ClusterHAUpdate{Enabled: new(true), FailureDetectionSeconds: new(int(o.Detection / time.Second))}
	if err := waitTask(ctx, c)(c.Update(ctx, api.KindCluster, client.DefaultCluster, api.ClusterUpdateRequest{HA: &u}, 0)); err != nil {
		return nil, fmt.Errorf("turn HA on: %w", err)
	}
	fmt.Fprintf(w, "creating and powering on %d VMs on %d hosts...\n", o.VMs, o.FailedHosts)
	_, _, errs := parallel(ctx, w, o.VMs, 32, func(i int) error {
		return waitTask(ctx, c)(c.CreateVM(ctx, api.VMCreateRequest{Name: fmt.Sprintf("ha-%05d", i), CPUs: 1, Memory: api.MustSize("256MiB"),
			Host: fmt.Sprintf("fail-%d", i%o.FailedHosts+1), Disks: []api.DiskRequest{{Size: api.MustSize("10GiB")}}, PowerOn: true}))
	})
	if errs > 0 {
		return nil, fmt.Errorf("%d VMs could not be created", errs)
	}
	return victim, nil
}

// watchFailover polls until every VM runs on a host that stayed, or the
// deadline: when each did (from t0), and when the last failed host was
// declared failed.
func watchFailover(ctx context.Context, c *client.Client, o HAOptions, t0, deadline time.Time) (map[string]time.Duration, time.Time, error) {
	back := map[string]time.Duration{}
	var lastFailed time.Time
	for len(back) < o.VMs && time.Now().Before(deadline) {
		vms, err := client.List[*api.VM](ctx, c, api.KindVM, nil)
		if err != nil {
			return nil, time.Time{}, err
		}
		now := time.Since(t0)
		for _, vm := range vms {
			if _, seen := back[vm.Metadata.Name]; !seen && !strings.HasPrefix(vm.Spec.Host.Name, "fail-") && vm.Status.PowerState == api.PowerOn {
				back[vm.Metadata.Name] = now
			}
		}
		if lastFailed.IsZero() {
			lastFailed = allFailedAt(ctx, c, o.FailedHosts)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return back, lastFailed, nil
}

// allFailedAt is when the last of n failed hosts was declared failed, or
// zero while fewer than n are.
func allFailedAt(ctx context.Context, c *client.Client, n int) time.Time {
	hs, err := client.List[*api.Host](ctx, c, api.KindHost, nil)
	if err != nil {
		return time.Time{}
	}
	failed, at := 0, time.Time{}
	for _, h := range hs {
		if !h.Status.FailedAt.IsZero() {
			failed++
			if h.Status.FailedAt.After(at) {
				at = h.Status.FailedAt
			}
		}
	}
	if failed != n {
		return time.Time{}
	}
	return at
}
