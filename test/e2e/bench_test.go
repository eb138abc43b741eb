package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// The benchmarks below need the network lab and take minutes; they run
// only when asked for:
//
//	VDC_BENCH=1 go test -count=1 -timeout 60m -run Bench -v ./test/e2e
//
// Their numbers go to docs/PERFORMANCE.md.
func needBench(t *testing.T) {
	if os.Getenv("VDC_BENCH") != "1" {
		t.Skip("a benchmark: set VDC_BENCH=1 to run it")
	}
}

// A 256 MiB guest holding 64 MiB of compressible data in memory moves,
// with its 64 MiB disk, between hosts that share no storage, across a
// WAN of 100 ms round trip and 100 Mbit/s: plain, zstd, xbzrle.
func TestBenchWANMigration(t *testing.T) {
	needBench(t)
	lab, cl := newMigrationLab(t, 2)
	for i, h := range []string{"host-1", "host-2"} {
		dir := filepath.Join(cl.dir, fmt.Sprintf("local%d", i+1))
		os.MkdirAll(dir, 0o755)
		cl.vdc("datastore", "create", fmt.Sprintf("local%d", i+1), "--path", dir, "--host", h)
	}
	eventually(t, 30*time.Second, "local datastores reached", func() bool {
		var dss []*api.Datastore
		cl.json(&dss, "datastore", "ls")
		n := 0
		for _, ds := range dss {
			if strings.HasPrefix(ds.Metadata.Name, "local") && len(ds.Status.Hosts) == 1 && ds.Status.CapacityBytes > 0 {
				n++
			}
		}
		return n == 2
	})
	cl.vdc("vm", "create", "wan", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--disk", "64MiB,datastore=local1", "--start")
	cl.waitGuest("wan")
	cl.vdc("vm", "exec", "wan", "--", "/bin/sh", "-c", "yes 'vdc wan benchmark line' | head -c 67108864 > /tmp/fill; echo disk | dd of=/dev/vda bs=1M seek=8 conv=fsync 2>/dev/null")
	lab.wan("50ms", "100mbit")
	t.Logf("WAN round trip host-1 to host-2: %s", pingRTT(t, lab, "host-1", lab.hostIP("host-2")))
	for _, compress := range []string{"", "zstd", "xbzrle"} {
		to, ds := "host-2", "local2"
		if cl.vm("wan").Spec.Host.Name == "host-2" {
			to, ds = "host-1", "local1"
		}
		args := []string{"vm", "migrate", "wan", "--host", to, "--datastore", ds, "--auto-converge"}
		if compress != "" {
			args = append(args, "--compress", compress)
		}
		t0 := time.Now()
		cl.vdc(args...)
		took := time.Since(t0)
		r := cl.migrateResult("wan")
		name := compress
		if name == "" {
			name = "none"
		}
		t.Logf("BENCH wan compress=%-6s task %6.1f s, QEMU total %6d ms, downtime %4d ms, %s sent in %d passes",
			name, took.Seconds(), r.TotalMs, r.DowntimeMs, r.Transferred, r.Passes)
	}
}

// Maintenance mode empties a host of 20 running real VMs.
func TestBenchMaintenanceRealVMs(t *testing.T) {
	needBench(t)
	_, cl := newMigrationLab(t, 2)
	cl.vdc("cluster", "update", "cluster1", "--cpu-overcommit", "16")
	const n = 20
	// Booted four at a time: twenty TCG boots at once on two cores starve
	// one another.
	for i := 0; i < n; i += 4 {
		for j := i; j < i+4 && j < n; j++ {
			cl.vdc("vm", "create", fmt.Sprintf("ev%d", j), "--memory", "256MiB", "--image", "test", "--no-nic", "--host", "host-1", "--start")
		}
		for j := i; j < i+4 && j < n; j++ {
			cl.waitGuest(fmt.Sprintf("ev%d", j))
		}
	}
	t0 := time.Now()
	cl.vdc("host", "maintenance", "enter", "host-1")
	took := time.Since(t0)
	if h := cl.hosts()["host-1"]; h.Status.VMs != 0 {
		t.Fatalf("host-1 still has %d VMs", h.Status.VMs)
	}
	for i := 0; i < n; i++ {
		if pids := qemuPIDs(t, fmt.Sprintf("ev%d", i)); len(pids) != 1 {
			t.Fatalf("ev%d: QEMU processes %v", i, pids)
		}
	}
	t.Logf("BENCH maintenance: %d running real VMs (256 MiB, TCG) evacuated in %.1f s", n, took.Seconds())
}

// Maintenance mode empties a simulated host of 1,000 VMs.
func TestBenchMaintenanceSimVMs(t *testing.T) {
	needBench(t)
	cl := newCluster(t)
	cl.agentArgs = []string{"--sim-memory", "256GiB", "--sim-cpus", "256"}
	cl.inventoryN(3)
	ctx := context.Background()
	const n = 1000
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			tk, err := cl.c.CreateVM(ctx, api.VMCreateRequest{Name: fmt.Sprintf("s%04d", i), CPUs: 1, Memory: api.MustSize("128MiB"),
				Host: "host-1", PowerOn: i%10 != 0, NICs: []api.NICRequest{}})
			if err == nil {
				_, err = cl.c.Wait(ctx, tk)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d creates failed, first: %v", len(errs), errs[0])
	}
	t0 := time.Now()
	cl.vdc("host", "maintenance", "enter", "host-1")
	took := time.Since(t0)
	if h := cl.hosts()["host-1"]; h.Status.VMs != 0 {
		t.Fatalf("host-1 still has %d VMs", h.Status.VMs)
	}
	t.Logf("BENCH maintenance: %d sim VMs (900 running, 128 MiB) evacuated in %.1f s", n, took.Seconds())
}

// HA failover of one real VM: from the crash of its host (agent and QEMU
// killed at once) to the VM running on another host, and to its guest
// agent answering, with the default detection time and an aggressive one.
func TestBenchHAFailoverRealVM(t *testing.T) {
	needBench(t)
	for _, detect := range []string{"10s", "3s"} {
		lab, cl := newMigrationLab(t, 2)
		cl.vdc("cluster", "update", "cluster1", "--ha", "on", "--ha-failure-detection", detect)
		cl.vdc("vm", "create", "fo", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start")
		cl.waitGuest("fo")
		time.Sleep(3 * time.Second)
		t0 := time.Now()
		lab.crash(t, "host-1")
		var running, failed time.Duration
		eventually(t, 3*time.Minute, "fo running on host-2", func() bool {
			if failed == 0 && !cl.hosts()["host-1"].Status.FailedAt.IsZero() {
				failed = time.Since(t0)
			}
			v := cl.vm("fo")
			return v.Spec.Host.Name == "host-2" && v.Status.PowerState == api.PowerOn
		})
		running = time.Since(t0)
		cl.waitGuest("fo")
		t.Logf("BENCH ha real detection=%s: host failed %.1f s, VM on again %.1f s, guest agent answering %.1f s after the crash",
			detect, failed.Seconds(), running.Seconds(), time.Since(t0).Seconds())
	}
}
