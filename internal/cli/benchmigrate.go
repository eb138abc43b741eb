package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/pki"
	"github.com/vdc-project/vdc/internal/qga"
	"github.com/vdc-project/vdc/internal/qmp"
	"github.com/vdc-project/vdc/internal/testguest"
)

type benchMigrate struct {
	runs  int
	sizes []string
	keep  string
}

// migrateCase is one guest the benchmark migrates: its memory, and
// whether it dirties memory the whole time.
type migrateCase struct {
	Memory api.Size `json:"memory"`
	Dirty  bool     `json:"dirtying"`
}

func (c migrateCase) String() string {
	if c.Dirty {
		return c.Memory.String() + " dirtying"
	}
	return c.Memory.String() + " idle"
}

// migrateTimes are the medians of one side's runs, in ms. Total and
// Downtime are what QEMU reports; EndToEnd is from the request to the VM
// running on the target (for vdc, the whole task: checks, starting the
// target's QEMU, switch-over, inventory).
type migrateTimes struct {
	Total    float64 `json:"totalMs"`
	Downtime float64 `json:"downtimeMs"`
	EndToEnd float64 `json:"endToEndMs"`
	// vdc only: readying the target's copy, and the switch-over.
	Prepare float64 `json:"prepareMs,omitempty"`
	Switch  float64 `json:"switchMs,omitempty"`
}

type migrateRow struct {
	Case     migrateCase  `json:"case"`
	Plain    migrateTimes `json:"plainQemu"`
	PlainTLS migrateTimes `json:"plainQemuTls"` // the same certificates and QEMU objects as vdc
	Vdc      migrateTimes `json:"vdc"`          // TLS, the default
	Insecure migrateTimes `json:"vdcInsecure"`  // --insecure: no TLS, as the plain run
	// Ratio is vdc's end-to-end time over plain QEMU's, with TLS on both
	// sides; RatioInsecure without.
	Ratio         float64 `json:"ratio"`
	RatioInsecure float64 `json:"ratioInsecure"`
}

type migrateBenchResult struct {
	Accel string       `json:"accel"`
	Runs  int          `json:"runs"`
	Rows  []migrateRow `json:"rows"`
}

func newBenchMigrateCmd(g *globals) *cobra.Command {
	var b benchMigrate
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
			if b.runs < 1 {
				return fmt.Errorf("--runs must be at least 1")
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
			fmt.Fprintf(g.stdout, "vdc bench migrate: test guest under %s, medians of %d runs, times in ms\n", res.Accel, res.Runs)
			fmt.Fprintln(g.stdout, "QEMU's total / downtime, then from the request to the guest running on the target (plain: 'migrate' to 'running')")
			fmt.Fprintf(g.stdout, "%-17s %-18s %-18s %-18s %-18s %s\n", "guest", "plain TLS", "vdc TLS", "plain", "vdc --insecure", "ratio TLS, insecure")
			for _, r := range res.Rows {
				cell := func(m migrateTimes) string { return fmt.Sprintf("%.0f/%.0f -> %.0f", m.Total, m.Downtime, m.EndToEnd) }
				fmt.Fprintf(g.stdout, "%-17s %-18s %-18s %-18s %-18s %.2f, %.2f\n", r.Case, cell(r.PlainTLS), cell(r.Vdc),
					cell(r.Plain), cell(r.Insecure), r.Ratio, r.RatioInsecure)
			}
			fmt.Fprintln(g.stdout, "vdc's task time, split: prepare (target copy ready) + QEMU total + switch-over, TLS / insecure:")
			for _, r := range res.Rows {
				fmt.Fprintf(g.stdout, "  %-20s %4.0f + %4.0f + %4.0f  /  %4.0f + %4.0f + %4.0f\n", r.Case,
					r.Vdc.Prepare, r.Vdc.Total, r.Vdc.Switch, r.Insecure.Prepare, r.Insecure.Total, r.Insecure.Switch)
			}
			return nil
		},
	}
	cmd.Flags().IntVar(&b.runs, "runs", 3, "migrations to time for each guest and side")
	cmd.Flags().StringSliceVar(&b.sizes, "memory", []string{"256MiB", "1GiB"}, "guest memory sizes")
	cmd.Flags().StringVar(&b.keep, "data", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

// settle is how long a guest runs after its agent first answers before it
// is migrated: the end of its boot dirties memory.
const settle = 3 * time.Second

// dirtier rewrites 64 MiB of the guest's memory (its tmpfs root) in a loop,
// in the background.
var dirtier = []string{"/bin/sh", "-c", "(while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count=64 2>/dev/null; done) </dev/null >/dev/null 2>&1 &"}

func (b *benchMigrate) run(ctx context.Context, g *globals) (*migrateBenchResult, error) {
	if err := qemu.Available(""); err != nil {
		return nil, err
	}
	var cases []migrateCase
	for _, s := range b.sizes {
		m, err := api.ParseSize(s)
		if err != nil || m < 64<<20 {
			return nil, fmt.Errorf("--memory %q: want a size of at least 64MiB", s)
		}
		cases = append(cases, migrateCase{Memory: m}, migrateCase{Memory: m, Dirty: true})
	}
	dir, cleanup, err := benchDir(b.keep, "vdc-bench-migrate")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	fmt.Fprintln(g.stderr, "building the test guest...")
	guest, err := testguest.Build(ctx, testguest.Options{OutDir: filepath.Join(dir, "guest"), CacheDir: filepath.Join(os.TempDir(), "vdc-testguest-cache")})
	if err != nil {
		return nil, err
	}
	res := &migrateBenchResult{Accel: "tcg", Runs: b.runs}
	if qemu.ProbeKVM(ctx, "qemu-system-x86_64") == nil {
		res.Accel = "kvm"
	}
	tlsDir, err := benchTLSDir(filepath.Join(dir, "tls"))
	if err != nil {
		return nil, err
	}
	rows := make([]migrateRow, len(cases))
	for i, c := range cases {
		fmt.Fprintf(g.stderr, "plain QEMU, %s guest...\n", c)
		rows[i].Case = c
		for _, tls := range []string{"", tlsDir} {
			var runs []migrateTimes
			for r := 0; r < b.runs; r++ {
				t, err := plainMigrate(ctx, guest, res.Accel, c, filepath.Join(dir, fmt.Sprintf("plain-%d-%d", i, r)), tls)
				if err != nil {
					return nil, fmt.Errorf("plain QEMU, %s guest: %w", c, err)
				}
				runs = append(runs, t)
			}
			if tls == "" {
				rows[i].Plain = medianTimes(runs)
			} else {
				rows[i].PlainTLS = medianTimes(runs)
			}
		}
	}

	c, stop, err := b.startDatacenter(ctx, g, dir, res.Accel, guest)
	defer stop()
	if err != nil {
		return nil, err
	}
	for i, mc := range cases {
		fmt.Fprintf(g.stderr, "vdc, %s guest...\n", mc)
		for _, insecure := range []bool{false, true} {
			var runs []migrateTimes
			for r := 0; r < b.runs; r++ {
				// A fresh VM each time, as the plain side: a QEMU's first
				// migration is its slowest.
				name := fmt.Sprintf("mig%d-%d", i, r)
				if insecure {
					name += "-insecure"
				}
				if err := vdcGuest(ctx, c, name, mc); err != nil {
					return nil, err
				}
				t, err := vdcMigrate(ctx, c, name, mc.Dirty, insecure)
				if err != nil {
					return nil, err
				}
				runs = append(runs, t)
				if t, err := c.Delete(ctx, api.KindVM, name, map[string][]string{"force": {"true"}}); err == nil {
					_, _ = c.Wait(ctx, t)
				}
			}
			if insecure {
				rows[i].Insecure = medianTimes(runs)
			} else {
				rows[i].Vdc = medianTimes(runs)
			}
		}
		r := &rows[i]
		r.Ratio, r.RatioInsecure = r.Vdc.EndToEnd/r.PlainTLS.EndToEnd, r.Insecure.EndToEnd/r.Plain.EndToEnd
	}
	res.Rows = rows
	return res, nil
}

// startDatacenter runs a server and two QEMU agents on this machine, with
// the test image uploaded.
func (b *benchMigrate) startDatacenter(ctx context.Context, g *globals, dir, accel string, guest testguest.Result) (*client.Client, func(), error) {
	dc, err := startBenchDC(ctx, dir)
	if err != nil {
		return nil, func() {}, err
	}
	c := dc.c
	for _, h := range []string{"host-1", "host-2"} {
		if _, err := dc.agent(ctx, h, 1, "--driver", "qemu", "--accel", accel, "--guest-poll", "200ms"); err != nil {
			return nil, dc.stop, err
		}
	}
	if err := dc.waitHosts(ctx, 2); err != nil {
		return nil, dc.stop, err
	}
	quiet := &globals{stdout: discard{}, stderr: discard{}, config: g.config}
	up := &imageUpload{name: "test", kernel: guest.Kernel, initrd: guest.Initrd, cmdline: guest.Cmdline}
	return c, dc.stop, up.runWith(ctx, quiet, c)
}

// vdcGuest starts a VM of the test image on host-1 and waits for its boot
// to settle (and for its dirtying loop to run).
func vdcGuest(ctx context.Context, c *client.Client, name string, mc migrateCase) error {
	if err := createAndWait(ctx, c, api.VMCreateRequest{Name: name, CPUs: 1, Memory: mc.Memory, Image: "test", Host: "host-1",
		NICs: []api.NICRequest{}, PowerOn: true}); err != nil {
		return err
	}
	if _, err := waitGuestAnswer(ctx, c, name, 3*time.Minute); err != nil {
		return err
	}
	time.Sleep(settle)
	if mc.Dirty {
		if _, err := c.Exec(ctx, name, api.ExecRequest{Command: dirtier}); err != nil {
			return fmt.Errorf("start the dirtying loop in vm %s: %w", name, err)
		}
		time.Sleep(2 * time.Second)
	}
	return nil
}

// vdcMigrate moves a VM to the other host and times it.
func vdcMigrate(ctx context.Context, c *client.Client, name string, dirty, insecure bool) (migrateTimes, error) {
	vm, err := c.GetVM(ctx, name)
	if err != nil {
		return migrateTimes{}, err
	}
	to := "host-1"
	if vm.Spec.Host.Name == "host-1" {
		to = "host-2"
	}
	t0 := time.Now()
	t, err := c.Action(ctx, api.KindVM, name, "migrate", api.MigrateRequest{Host: to, Insecure: insecure, AutoConverge: dirty})
	if err == nil {
		t, err = c.Wait(ctx, t)
	}
	took := time.Since(t0)
	if err != nil {
		return migrateTimes{}, fmt.Errorf("migrate vm %s to %s: %w", name, to, err)
	}
	var r api.MigrateResult
	if err := json.Unmarshal(t.Result, &r); err != nil {
		return migrateTimes{}, fmt.Errorf("migrate vm %s: result %s: %w", name, t.Result, err)
	}
	return migrateTimes{Total: float64(r.TotalMs), Downtime: float64(r.DowntimeMs), EndToEnd: float64(took.Microseconds()) / 1000,
		Prepare: float64(r.PrepareMs), Switch: float64(r.SwitchMs)}, nil
}

func medianTimes(runs []migrateTimes) migrateTimes {
	pick := func(f func(migrateTimes) float64) float64 {
		d := make([]time.Duration, len(runs))
		for i, r := range runs {
			d[i] = time.Duration(f(r) * float64(time.Millisecond))
		}
		m, _ := median(d)
		return m
	}
	return migrateTimes{
		Total:    pick(func(t migrateTimes) float64 { return t.Total }),
		Downtime: pick(func(t migrateTimes) float64 { return t.Downtime }),
		EndToEnd: pick(func(t migrateTimes) float64 { return t.EndToEnd }),
		Prepare:  pick(func(t migrateTimes) float64 { return t.Prepare }),
		Switch:   pick(func(t migrateTimes) float64 { return t.Switch }),
	}
}

// plainMigrate starts the test guest and a receiving QEMU with bare
// command lines and migrates between them over loopback.
func plainMigrate(ctx context.Context, guest testguest.Result, accel string, mc migrateCase, dir, tlsDir string) (migrateTimes, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return migrateTimes{}, err
	}
	qemuArgs := func(side string) []string {
		return []string{"-name", "bench-plain-" + side, "-machine", "q35", "-accel", accel, "-cpu", qemu.CPUModel,
			"-m", strconv.FormatInt(int64(mc.Memory)>>20, 10) + "M", "-smp", "1",
			"-nodefaults", "-no-user-config", "-display", "none",
			"-kernel", guest.Kernel, "-initrd", guest.Initrd, "-append", guest.Cmdline,
			"-serial", "file:" + filepath.Join(dir, side+"-console.log"),
			"-qmp", "unix:" + filepath.Join(dir, side+".qmp") + ",server=on,wait=off",
			"-device", "virtio-serial-pci", "-chardev", "socket,id=qga0,path=" + filepath.Join(dir, side+"-qga.sock") + ",server=on,wait=off",
			"-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"}
	}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for _, side := range []string{"src", "dst"} {
		args := qemuArgs(side)
		if side == "dst" {
			args = append(args, "-incoming", "defer")
		}
		cmd := exec.Command("qemu-system-x86_64", args...)
		if out, err := os.Create(filepath.Join(dir, side+".log")); err == nil {
			cmd.Stdout, cmd.Stderr = out, out
			defer out.Close()
		}
		if err := cmd.Start(); err != nil {
			return migrateTimes{}, err
		}
		cmds = append(cmds, cmd)
	}
	// The guest is up when its agent answers.
	ga, err := dialGuestAgent(ctx, filepath.Join(dir, "src-qga.sock"), 3*time.Minute)
	if err != nil {
		return migrateTimes{}, err
	}
	defer ga.Close()
	time.Sleep(settle)
	if mc.Dirty {
		if _, err := ga.Exec(ctx, qga.ExecRequest{Path: dirtier[0], Args: dirtier[1:]}); err != nil {
			return migrateTimes{}, fmt.Errorf("start the dirtying loop: %w", err)
		}
		time.Sleep(2 * time.Second)
	}
	src, err := qmp.Dial(ctx, filepath.Join(dir, "src.qmp"))
	if err != nil {
		return migrateTimes{}, err
	}
	defer src.Close()
	dst, err := qmp.Dial(ctx, filepath.Join(dir, "dst.qmp"))
	if err != nil {
		return migrateTimes{}, err
	}
	defer dst.Close()
	port, err := freeLoopbackPort()
	if err != nil {
		return migrateTimes{}, err
	}
	uri := "tcp:127.0.0.1:" + port
	params := map[string]any{"max-bandwidth": int64(1) << 40, "downtime-limit": 300}
	if tlsDir != "" {
		for q, endpoint := range map[*qmp.Client]string{dst: "server", src: "client"} {
			obj := map[string]any{"qom-type": "tls-creds-x509", "id": "tls0", "dir": tlsDir, "endpoint": endpoint}
			if endpoint == "server" {
				obj["verify-peer"] = true
			}
			if err := q.Execute(ctx, "object-add", obj, nil); err != nil {
				return migrateTimes{}, fmt.Errorf("add the TLS credentials: %w", err)
			}
			if err := q.Execute(ctx, "migrate-set-parameters", map[string]any{"tls-creds": "tls0"}, nil); err != nil {
				return migrateTimes{}, err
			}
		}
		params["tls-hostname"] = benchTLSName
	}
	if err := dst.Execute(ctx, "migrate-incoming", map[string]any{"uri": uri}, nil); err != nil {
		return migrateTimes{}, fmt.Errorf("migrate-incoming: %w", err)
	}
	caps := []map[string]any{{"capability": "auto-converge", "state": mc.Dirty}}
	if err := src.Execute(ctx, "migrate-set-capabilities", map[string]any{"capabilities": caps}, nil); err != nil {
		return migrateTimes{}, err
	}
	if err := src.Execute(ctx, "migrate-set-parameters", params, nil); err != nil {
		return migrateTimes{}, err
	}
	t0 := time.Now()
	if err := src.Execute(ctx, "migrate", map[string]any{"uri": uri}, nil); err != nil {
		return migrateTimes{}, fmt.Errorf("migrate: %w", err)
	}
	for {
		var q struct {
			Status    string `json:"status"`
			TotalTime int64  `json:"total-time"`
			Downtime  int64  `json:"downtime"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := src.Execute(ctx, "query-migrate", nil, &q); err != nil {
			return migrateTimes{}, err
		}
		switch q.Status {
		case "completed":
			// As vdc does before it calls a migration done: the target runs.
			if err := waitRunning(ctx, dst); err != nil {
				return migrateTimes{}, err
			}
			took := time.Since(t0)
			return migrateTimes{Total: float64(q.TotalTime), Downtime: float64(q.Downtime), EndToEnd: float64(took.Microseconds()) / 1000}, nil
		case "failed", "cancelled":
			return migrateTimes{}, fmt.Errorf("migration %s: %s", q.Status, q.ErrorDesc)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// benchTLSName is the name in the plain runs' certificate.
var benchTLSName = pki.HostDNSName("bench")

// benchTLSDir lays out a certificate for QEMU, as an agent does.
func benchTLSDir(dir string) (string, error) {
	ca, _, err := pki.NewCA("vdc bench CA")
	if err != nil {
		return "", err
	}
	cert, key, err := ca.Issue(pki.Names{CN: "host:bench", DNS: []string{benchTLSName}}, 24*time.Hour)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for name, data := range map[string][]byte{"ca-cert.pem": ca.CertPEM, "server-cert.pem": cert, "server-key.pem": key,
		"client-cert.pem": cert, "client-key.pem": key, "dh-params.pem": []byte(pki.FFDHE2048)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// waitRunning waits for a QEMU that received a migration to run the guest.
func waitRunning(ctx context.Context, q *qmp.Client) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		var st struct {
			Status string `json:"status"`
		}
		if err := q.Execute(ctx, "query-status", nil, &st); err != nil {
			return err
		}
		if st.Status == "running" {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("the target QEMU did not run the guest after the migration")
}

func dialGuestAgent(ctx context.Context, sock string, timeout time.Duration) (*qga.Client, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		q, err := qga.Dial(pctx, sock)
		if err == nil {
			if err = q.Ping(pctx); err == nil {
				cancel()
				return q, nil
			}
			q.Close()
		}
		cancel()
		time.Sleep(100 * time.Millisecond)
	}
	return nil, fmt.Errorf("the guest agent on %s did not answer within %s", sock, timeout)
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}
