package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/qga"
	"github.com/vdc-project/vdc/internal/testguest"
)

type benchBoot struct {
	runs, vms int
	keep      string
}

// bootResult is what `vdc bench boot` reports (times in ms).
type bootResult struct {
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

func newBenchBootCmd(g *globals) *cobra.Command {
	var b benchBoot
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
			if b.runs < 1 || b.vms < 0 {
				return fmt.Errorf("--runs must be at least 1 and --vms at least 0")
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
			fmt.Fprintf(g.stdout, `vdc bench boot: test guest under %s, %d runs each
  plain QEMU, start to first guest-agent answer: median %.0f ms (min %.0f)
  vdc vm start, to first guest-agent answer:     median %.0f ms (min %.0f)
  ratio vdc / plain:                             %.2f
  agent memory: %.1f MiB RSS idle, %.1f MiB with %d VMs running (each QEMU %.0f MiB); all %d guests answered %.1f s after start
`, res.Accel, res.Runs, res.PlainMedian, res.PlainMin, res.VdcMedian, res.VdcMin, res.Ratio,
				res.AgentIdleMiB, res.AgentRSSMiB, res.VMs, res.QEMURSSMiB, res.VMs, res.AllUpSeconds)
			return nil
		},
	}
	cmd.Flags().IntVar(&b.runs, "runs", 5, "boots to time on each side")
	cmd.Flags().IntVar(&b.vms, "vms", 10, "VMs to run at once for the agent's memory")
	cmd.Flags().StringVar(&b.keep, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func median(d []time.Duration) (med, lo float64) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2].Microseconds()) / 1000, float64(s[0].Microseconds()) / 1000
}

func (b *benchBoot) run(ctx context.Context, g *globals) (*bootResult, error) {
	if err := qemu.Available(""); err != nil {
		return nil, err
	}
	dir, cleanup, err := benchDir(b.keep, "vdc-bench-boot")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	fmt.Fprintln(g.stderr, "building the test guest...")
	guest, err := testguest.Build(ctx, testguest.Options{OutDir: filepath.Join(dir, "guest"), CacheDir: filepath.Join(os.TempDir(), "vdc-testguest-cache")})
	if err != nil {
		return nil, err
	}
	res := &bootResult{Accel: "tcg", Runs: b.runs, VMs: b.vms}
	if qemu.ProbeKVM(ctx, "qemu-system-x86_64") == nil {
		res.Accel = "kvm"
	}
	fmt.Fprintf(g.stderr, "timing %d plain QEMU boots...\n", b.runs)
	var plain []time.Duration
	for i := 0; i < b.runs; i++ {
		d, err := plainBoot(ctx, guest, res.Accel, filepath.Join(dir, fmt.Sprintf("plain%d", i)))
		if err != nil {
			return nil, err
		}
		plain = append(plain, d)
	}
	res.PlainMedian, res.PlainMin = median(plain)

	dc, err := startBenchDC(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	c := dc.c
	agentProc, err := dc.agent(ctx, "bench", 1, "--driver", "qemu", "--accel", res.Accel, "--guest-poll", "100ms")
	if err != nil {
		return nil, err
	}
	if err := dc.waitHosts(ctx, 1); err != nil {
		return nil, err
	}
	quiet := &globals{stdout: discard{}, stderr: discard{}, config: g.config}
	up := &imageUpload{name: "test", kernel: guest.Kernel, initrd: guest.Initrd, cmdline: guest.Cmdline}
	if err := up.runWith(ctx, quiet, c); err != nil {
		return nil, err
	}
	time.Sleep(time.Second) // a settled agent, for its idle memory
	res.AgentIdleMiB, _ = procMemory(agentProc.Process.Pid)
	defer deleteBenchVMs(context.Background(), c)

	fmt.Fprintf(g.stderr, "timing %d boots through vdc...\n", b.runs)
	if err := createAndWait(ctx, c, api.VMCreateRequest{Name: "boot", CPUs: 1, Memory: api.MustSize("256MiB"), Image: "test"}); err != nil {
		return nil, err
	}
	var viaVdc []time.Duration
	for i := 0; i < b.runs; i++ {
		t0 := time.Now()
		if err := powerAndWait(ctx, c, "boot", api.PowerRequest{Action: api.ActionStart}); err != nil {
			return nil, err
		}
		seen, err := waitGuestAnswer(ctx, c, "boot", 3*time.Minute)
		if err != nil {
			return nil, err
		}
		viaVdc = append(viaVdc, seen.Sub(t0))
		if err := powerAndWait(ctx, c, "boot", api.PowerRequest{Action: api.ActionStop, Force: true}); err != nil {
			return nil, err
		}
	}
	res.VdcMedian, res.VdcMin = median(viaVdc)
	res.Ratio = res.VdcMedian / res.PlainMedian

	if b.vms > 0 {
		fmt.Fprintf(g.stderr, "running %d VMs at once...\n", b.vms)
		// Room for them all on this machine's CPUs: the bench measures memory.
		ratio := float64(b.vms + 1)
		if _, err := c.Update(ctx, api.KindCluster, upCluster, api.ClusterUpdateRequest{CPUOvercommit: &ratio}, 0); err != nil {
			return nil, err
		}
		t0 := time.Now()
		for i := 0; i < b.vms; i++ {
			if err := createAndWait(ctx, c, api.VMCreateRequest{Name: fmt.Sprintf("many%d", i), CPUs: 1, Memory: api.MustSize("256MiB"), Image: "test", PowerOn: true}); err != nil {
				return nil, err
			}
		}
		for i := 0; i < b.vms; i++ {
			if _, err := waitGuestAnswer(ctx, c, fmt.Sprintf("many%d", i), 10*time.Minute); err != nil {
				return nil, err
			}
		}
		res.AllUpSeconds = time.Since(t0).Seconds()
		time.Sleep(3 * time.Second) // a few heartbeats and guest polls with all running
		res.AgentRSSMiB, _ = procMemory(agentProc.Process.Pid)
		res.QEMURSSMiB = qemuRSS("many")
	}
	return res, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func createAndWait(ctx context.Context, c *client.Client, req api.VMCreateRequest) error {
	t, err := c.CreateVM(ctx, req)
	if err == nil {
		_, err = c.Wait(ctx, t)
	}
	if err != nil {
		return fmt.Errorf("create vm %s: %w", req.Name, err)
	}
	return nil
}

func powerAndWait(ctx context.Context, c *client.Client, vm string, req api.PowerRequest) error {
	t, err := c.Power(ctx, vm, req)
	if err == nil {
		_, err = c.Wait(ctx, t)
	}
	if err != nil {
		return fmt.Errorf("%s vm %s: %w", req.Action, vm, err)
	}
	return nil
}

// waitGuestAnswer waits until a VM's guest agent answered and returns when
// it first did (as the host recorded it).
func waitGuestAnswer(ctx context.Context, c *client.Client, vm string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		v, err := c.GetVM(ctx, vm)
		if err == nil && v.Status.Guest != nil && v.Status.Guest.State == api.GuestRunning {
			if !v.Status.Guest.LastSeen.IsZero() {
				return v.Status.Guest.LastSeen, nil
			}
			return time.Now(), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("the guest agent of vm %s did not answer within %s", vm, timeout)
}

func deleteBenchVMs(ctx context.Context, c *client.Client) {
	vms, _ := client.List[*api.VM](ctx, c, api.KindVM, nil)
	for _, vm := range vms {
		if t, err := c.Delete(ctx, api.KindVM, vm.Metadata.Name, map[string][]string{"force": {"true"}}); err == nil {
			_, _ = c.Wait(ctx, t)
		}
	}
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

// qemuRSS is the mean RSS (MiB) of the QEMU processes of VMs named prefix*.
func qemuRSS(prefix string) float64 {
	out, _ := exec.Command("pgrep", "-f", "qemu-system-x86_64 -name guest="+prefix).Output()
	var sum float64
	n := 0
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			rss, _ := procMemory(pid)
			sum += rss
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
