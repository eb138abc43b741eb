package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/qga"
	"github.com/vdc-project/vdc/internal/testguest"
)

// BootOptions are the settings of Boot.
type BootOptions struct {
	Runs     int       // boots to time on each side
	VMs      int       // VMs to run at once for the agent's memory (0: none)
	Dir      string    // keep the data here (default: a temp dir, removed)
	Progress io.Writer // progress lines (nil: none)
}

// BootResult is what `vdc bench boot` reports (times in ms).
type BootResult struct {
	Accel        string  `json:"accel"`
	Runs         int     `json:"runs"`
	PlainMedian  float64 `json:"plainQemuMedianMs"`
	PlainMin     float64 `json:"plainQemuMinMs"`
	VdcMedian    float64 `json:"vdcMedianMs"`
	VdcMin       float64 `json:"vdcMinMs"`
	Ratio        float64 `json:"ratio"`
	VMs          int     `json:"vms"`
	AgentRSSMiB  float64 `json:"agentRssMiB"`
	AgentIdleMiB float64 `json:"agentIdleRssMiB"`
	QEMURSSMiB   float64 `json:"qemuRssMiBEach"`
	AllUpSeconds float64 `json:"allGuestsUpSeconds"`
}

// Boot builds the test guest, then:
//  1. starts it o.Runs times with a plain qemu-system-x86_64 command line
//     and times each from the start of the process to the first answer of
//     its qemu-guest-agent (pinged every 100 ms);
//  2. starts a `vdc server` and a `vdc agent --driver qemu` (guest agents
//     pinged every 100 ms), makes a VM from the test image and times `vm
//     start` through the API until the VM's first guest-agent answer,
//     o.Runs times;
//  3. runs o.VMs VMs at once and reads the agent's memory (RSS).
func Boot(ctx context.Context, o BootOptions) (*BootResult, error) {
	if o.Runs < 1 || o.VMs < 0 {
		return nil, errors.New("bench boot: runs must be at least 1 and VMs at least 0")
	}
	if err := qemu.Available(""); err != nil {
		return nil, err
	}
	w := progress(o.Progress)
	dir, cleanup, err := dataDir(o.Dir, "vdc-bench-boot")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	fmt.Fprintln(w, "building the test guest...")
	guest, err := buildGuest(ctx, dir)
	if err != nil {
		return nil, err
	}
	res := &BootResult{Accel: accel(ctx), Runs: o.Runs, VMs: o.VMs}
	fmt.Fprintf(w, "timing %d plain QEMU boots...\n", o.Runs)
	var plain []time.Duration
	for i := 0; i < o.Runs; i++ {
		d, err := plainBoot(ctx, guest, res.Accel, filepath.Join(dir, fmt.Sprintf("plain%d", i)))
		if err != nil {
			return nil, err
		}
		plain = append(plain, d)
	}
	res.PlainMedian, res.PlainMin = median(plain)

	dc, err := startDC(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	agentProc, err := dc.agent(ctx, "bench", 1, "--driver", "qemu", "--accel", res.Accel, "--guest-poll", "100ms")
	if err != nil {
		return nil, err
	}
	if err := dc.waitHosts(ctx, 1); err != nil {
		return nil, err
	}
	if err := dc.uploadTestImage(ctx, guest); err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // a settled agent, for its idle memory
	res.AgentIdleMiB, _ = procMemory(agentProc.Process.Pid)
	defer deleteVMs(context.Background(), dc.c)

	fmt.Fprintf(w, "timing %d boots through vdc...\n", o.Runs)
	if err := vdcBoots(ctx, dc.c, o.Runs, res); err != nil {
		return nil, err
	}
	if o.VMs > 0 {
		fmt.Fprintf(w, "running %d VMs at once...\n", o.VMs)
		if err := runMany(ctx, dc.c, o.VMs, res); err != nil {
			return nil, err
		}
		res.AgentRSSMiB, _ = procMemory(agentProc.Process.Pid)
		res.QEMURSSMiB = qemuRSS("many")
	}
	return res, nil
}

// accel is the accelerator QEMU runs guests with on this machine.
func accel(ctx context.Context) string {
	if qemu.ProbeKVM(ctx, "qemu-system-x86_64") == nil {
		return "kvm"
	}
	return "tcg"
}

// vdcBoots times runs starts of one VM through the API, each to its first
// guest-agent answer.
func vdcBoots(ctx context.Context, c *client.Client, runs int, res *BootResult) error {
	if err := createAndWait(ctx, c, api.VMCreateRequest{Name: "boot", CPUs: 1, Memory: api.MustSize("256MiB"), Image: "test"}); err != nil {
		return err
	}
	var viaVdc []time.Duration
	for i := 0; i < runs; i++ {
		t0 := time.Now()
		if err := powerAndWait(ctx, c, "boot", api.PowerRequest{Action: api.ActionStart}); err != nil {
			return err
		}
		seen, err := waitGuestAnswer(ctx, c, "boot", 3*time.Minute)
		if err != nil {
			return err
		}
		viaVdc = append(viaVdc, seen.Sub(t0))
		if err := powerAndWait(ctx, c, "boot", api.PowerRequest{Action: api.ActionStop, Force: true}); err != nil {
			return err
		}
	}
	res.VdcMedian, res.VdcMin = median(viaVdc)
	res.Ratio = res.VdcMedian / res.PlainMedian
	return nil
}

// runMany starts n VMs and waits for all their guests to answer.
func runMany(ctx context.Context, c *client.Client, n int, res *BootResult) error {
	// Room for them all on this machine's CPUs: the bench measures memory.
	ratio := float64(n + 1)
	if _, err := c.Update(ctx, api.KindCluster, client.DefaultCluster, api.ClusterUpdateRequest{CPUOvercommit: &ratio}, 0); err != nil {
		return err
	}
	t0 := time.Now()
	for i := 0; i < n; i++ {
		if err := createAndWait(ctx, c, api.VMCreateRequest{Name: fmt.Sprintf("many%d", i), CPUs: 1, Memory: api.MustSize("256MiB"), Image: "test", PowerOn: true}); err != nil {
			return err
		}
	}
	for i := 0; i < n; i++ {
		if _, err := waitGuestAnswer(ctx, c, fmt.Sprintf("many%d", i), 10*time.Minute); err != nil {
			return err
		}
	}
	res.AllUpSeconds = time.Since(t0).Seconds()
	time.Sleep(3 * time.Second) // a few heartbeats and guest polls with all running
	return nil
}

// plainBoot starts the test guest with a bare QEMU command line and times
// it to the first answer of its guest agent.
func plainBoot(ctx context.Context, guest testguest.Result, accel, dir string) (time.Duration, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	sock := filepath.Join(dir, "qga.sock")
	args := []string{"-machine", "q35", "-accel", accel, "-cpu", qemu.CPUModel, "-m", "256M", "-smp", "1",
		"-nodefaults", "-no-user-config", "-display", "none",
		"-kernel", guest.Kernel, "-initrd", guest.Initrd, "-append", guest.Cmdline,
		"-serial", "file:" + filepath.Join(dir, "console.log"),
		"-device", "virtio-serial-pci", "-chardev", "socket,id=qga0,path=" + sock + ",server=on,wait=off",
		"-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"}
	cmd := exec.Command("qemu-system-x86_64", args...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := start.Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		q, err := qga.Dial(pctx, sock)
		if err == nil {
			err = q.Ping(pctx)
			q.Close()
		}
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("plain QEMU: the guest agent did not answer in 3 minutes")
}
