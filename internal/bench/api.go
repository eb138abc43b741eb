package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// APIOptions are the settings of API.
type APIOptions struct {
	VMs         int // VMs to create and power on
	Hosts       int // simulated hosts
	Concurrency int // concurrent API clients
	Lists       int // full VM lists to time
	// ServerDebugListen, when set, serves the server's pprof profiles
	// on this address while it runs.
	ServerDebugListen string
	Dir               string    // keep the data here (default: a temp dir, removed)
	Progress          io.Writer // progress lines (nil: none)
}

// APIResult is what `vdc bench api` reports.
type APIResult struct {
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
	// The server's CPU time per VM created and per power-on: what the
	// control plane costs, much less sensitive to the machine's load than
	// the rates.
	ServerCPUPerCreateMs  float64 `json:"serverCpuPerCreateMs"`
	ServerCPUPerPowerOnMs float64 `json:"serverCpuPerPowerOnMs"`
	ServerRSSMiB          float64 `json:"serverRssMiB"`
	ServerPeakRSSMiB      float64 `json:"serverPeakRssMiB"`
}

// API starts a `vdc server` and one `vdc agent --sim-hosts N` process (N
// simulated hosts in one agent process, each joined with its own
// certificate and agent API), then through the REST API creates and powers
// on o.VMs VMs with o.Concurrency clients and lists them all o.Lists
// times.
func API(ctx context.Context, o APIOptions) (*APIResult, error) {
	if o.VMs < 1 || o.Hosts < 1 || o.Concurrency < 1 || o.Lists < 1 {
		return nil, errors.New("bench api: VMs, hosts, concurrency and lists must be at least 1")
	}
	w := progress(o.Progress)
	dir, cleanup, err := dataDir(o.Dir, "vdc-bench")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var srvArgs []string
	if o.ServerDebugListen != "" {
		srvArgs = append(srvArgs, "--debug-listen", o.ServerDebugListen)
	}
	dc, err := startDC(ctx, dir, srvArgs...)
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	// Room for every VM: the bench measures the control plane, not placement refusals.
	perHost := (o.VMs + o.Hosts - 1) / o.Hosts
	if _, err := dc.agent(ctx, "sim", o.Hosts, "--driver", "sim", "--sim-hosts", strconv.Itoa(o.Hosts),
		"--sim-cpus", strconv.Itoa(max(16, perHost)), "--sim-memory", api.Size(int64(perHost+16)<<30).String()); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "waiting for %d sim hosts...\n", o.Hosts)
	if err := waitConnected(ctx, dc.c, o.Hosts, 2*time.Minute); err != nil {
		return nil, err
	}
	res := &APIResult{VMs: o.VMs, Hosts: o.Hosts, Concurrency: o.Concurrency}
	createAndPowerOn(ctx, w, dc.c, o, res, dc.srv.Process.Pid)
	if err := timeLists(ctx, w, dc.c, o, res); err != nil {
		return nil, err
	}
	res.ServerRSSMiB, res.ServerPeakRSSMiB = procMemory(dc.srv.Process.Pid)
	return res, nil
}

// createAndPowerOn creates the VMs, then powers them on, and times both.
func createAndPowerOn(ctx context.Context, w io.Writer, c *client.Client, o APIOptions, res *APIResult, server int) {
	name := func(i int) string { return fmt.Sprintf("bench-%05d", i) }
	fmt.Fprintf(w, "creating %d VMs...\n", o.VMs)
	created := make([]bool, o.VMs)
	cpu0 := procCPU(server)
	createTime, creates, createErrs := parallel(ctx, w, o.VMs, o.Concurrency, func(i int) error {
		err := waitTask(ctx, c)(c.CreateVM(ctx, api.VMCreateRequest{Name: name(i), CPUs: 1, Memory: api.MustSize("256MiB"),
			Disks: []api.DiskRequest{{Size: api.MustSize("10GiB")}}}))
		created[i] = err == nil
		return err
	})
	cpu1 := procCPU(server)
	fmt.Fprintf(w, "powering on %d VMs...\n", o.VMs)
	powerTime, powers, powerErrs := parallel(ctx, w, o.VMs, o.Concurrency, func(i int) error {
		if !created[i] {
			return nil
		}
		return waitTask(ctx, c)(c.Power(ctx, name(i), api.PowerRequest{Action: api.ActionStart}))
	})
	cpu2 := procCPU(server)
	res.ServerCPUPerCreateMs = float64((cpu1 - cpu0).Milliseconds()) / float64(o.VMs)
	res.ServerCPUPerPowerOnMs = float64((cpu2 - cpu1).Milliseconds()) / float64(o.VMs)
	res.CreateSeconds, res.PowerOnSeconds = createTime.Seconds(), powerTime.Seconds()
	res.CreatesPerSecond = float64(o.VMs) / createTime.Seconds()
	res.PowerOnsPerSecond = float64(o.VMs) / powerTime.Seconds()
	res.CreateErrors, res.PowerOnErrors = createErrs, powerErrs
	res.CreateP50, res.CreateP99 = percentiles(creates)
	res.PowerOnP50, res.PowerOnP99 = percentiles(powers)
}

// timeLists lists every VM o.Lists times.
func timeLists(ctx context.Context, w io.Writer, c *client.Client, o APIOptions, res *APIResult) error {
	fmt.Fprintf(w, "listing %d VMs %d times...\n", o.VMs, o.Lists)
	lists := make([]time.Duration, o.Lists)
	for i := range lists {
		t0 := time.Now()
		var raw json.RawMessage
		if err := c.Do(ctx, client.Request{Method: "GET", Path: "/vms"}, &raw); err != nil {
			return fmt.Errorf("list VMs: %w", err)
		}
		lists[i] = time.Since(t0) // the API's answer, read in full; decoding into Go types is the caller's
		var l api.List[*api.VM]
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		if want := o.VMs - int(res.CreateErrors); len(l.Items) != want && i == 0 {
			fmt.Fprintf(w, "warning: listed %d VMs, expected %d\n", len(l.Items), want)
		}
		res.ListBytes = len(raw)
	}
	res.ListP50, res.ListP99 = percentiles(lists)
	return nil
}
