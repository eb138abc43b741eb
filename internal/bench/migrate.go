package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
	"github.com/vdc-project/vdc/internal/testguest"
)

// MinMigrateMemory is the smallest guest Migrate takes.
const MinMigrateMemory = api.Size(64 << 20)

// MigrateOptions are the settings of Migrate.
type MigrateOptions struct {
	Runs     int        // migrations to time for each guest and side
	Memory   []api.Size // guest memory sizes, each at least MinMigrateMemory
	Dir      string     // keep the data here (default: a temp dir, removed)
	Progress io.Writer  // progress lines (nil: none)
}

// MigrateCase is one guest the benchmark migrates: its memory, and
// whether it dirties memory the whole time.
type MigrateCase struct {
	Memory api.Size `json:"memory"`
	Dirty  bool     `json:"dirtying"`
}

func (c MigrateCase) String() string {
	if c.Dirty {
		return c.Memory.String() + " dirtying"
	}
	return c.Memory.String() + " idle"
}

// MigrateTimes are the medians of one side's runs, in ms. Total and
// Downtime are what QEMU reports; EndToEnd is from the request to the VM
// running on the target (for vdc, the whole task: checks, starting the
// target's QEMU, switch-over, inventory).
type MigrateTimes struct {
	Total    float64 `json:"totalMs"`
	Downtime float64 `json:"downtimeMs"`
	EndToEnd float64 `json:"endToEndMs"`
	// vdc only: readying the target's copy, and the switch-over.
	Prepare float64 `json:"prepareMs,omitempty"`
	Switch  float64 `json:"switchMs,omitempty"`
}

// MigrateRow is one guest's times on each side.
type MigrateRow struct {
	Case     MigrateCase  `json:"case"`
	Plain    MigrateTimes `json:"plainQemu"`
	PlainTLS MigrateTimes `json:"plainQemuTls"` // the same certificates and QEMU objects as vdc
	Vdc      MigrateTimes `json:"vdc"`          // TLS, the default
	Insecure MigrateTimes `json:"vdcInsecure"`  // --insecure: no TLS, as the plain run
	// Ratio is vdc's end-to-end time over plain QEMU's, with TLS on both
	// sides; RatioInsecure without.
	Ratio         float64 `json:"ratio"`
	RatioInsecure float64 `json:"ratioInsecure"`
}

// MigrateResult is what `vdc bench migrate` reports.
type MigrateResult struct {
	Accel string       `json:"accel"`
	Runs  int          `json:"runs"`
	Rows  []MigrateRow `json:"rows"`
}

// settle is how long a guest runs after its agent first answers before it
// is migrated: the end of its boot dirties memory.
const settle = 3 * time.Second

// dirtier rewrites 64 MiB of the guest's memory (its tmpfs root) in a loop,
// in the background.
var dirtier = []string{"/bin/sh", "-c", "(while :; do dd if=/dev/zero of=/tmp/dirty bs=1M count=64 2>/dev/null; done) </dev/null >/dev/null 2>&1 &"}

// Migrate builds the test guest, then for each memory size, idle and with
// a guest that rewrites 64 MiB of its memory in a loop:
//  1. plain QEMU: starts the guest and a second QEMU with -incoming, and
//     migrates over loopback TCP with QMP (bandwidth uncapped, QEMU's
//     default 300 ms downtime limit, auto-converge for the dirtying guest),
//     with and without TLS; times from `migrate` to the target running,
//     with QEMU's own total and downtime;
//  2. vdc: a server and two agents on this machine; `vm migrate` between
//     them, over TLS (the default) and insecure, timed from the request to
//     the finished task, with QEMU's total and downtime from its result.
//
// Each is run o.Runs times; the rows hold the medians.
func Migrate(ctx context.Context, o MigrateOptions) (*MigrateResult, error) {
	if o.Runs < 1 {
		return nil, errors.New("bench migrate: runs must be at least 1")
	}
	if err := qemu.Available(""); err != nil {
		return nil, err
	}
	var cases []MigrateCase
	for _, m := range o.Memory {
		if m < MinMigrateMemory {
			return nil, fmt.Errorf("bench migrate: memory %s: want at least %s", m, MinMigrateMemory)
		}
		cases = append(cases, MigrateCase{Memory: m}, MigrateCase{Memory: m, Dirty: true})
	}
	w := progress(o.Progress)
	dir, cleanup, err := dataDir(o.Dir, "vdc-bench-migrate")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	fmt.Fprintln(w, "building the test guest...")
	guest, err := buildGuest(ctx, dir)
	if err != nil {
		return nil, err
	}
	res := &MigrateResult{Accel: accel(ctx), Runs: o.Runs}
	tlsDir, err := benchTLSDir(filepath.Join(dir, "tls"))
	if err != nil {
		return nil, err
	}
	rows := make([]MigrateRow, len(cases))
	for i, c := range cases {
		fmt.Fprintf(w, "plain QEMU, %s guest...\n", c)
		rows[i].Case = c
		if rows[i].Plain, err = plainRuns(ctx, guest, res.Accel, c, o.Runs, filepath.Join(dir, fmt.Sprintf("plain-%d", i)), ""); err != nil {
			return nil, err
		}
		if rows[i].PlainTLS, err = plainRuns(ctx, guest, res.Accel, c, o.Runs, filepath.Join(dir, fmt.Sprintf("plain-%d", i)), tlsDir); err != nil {
			return nil, err
		}
	}

	dc, err := migrateDatacenter(ctx, dir, res.Accel, guest)
	if dc != nil {
		defer dc.stop()
	}
	if err != nil {
		return nil, err
	}
	for i, mc := range cases {
		fmt.Fprintf(w, "vdc, %s guest...\n", mc)
		r := &rows[i]
		if r.Vdc, err = vdcRuns(ctx, dc.c, fmt.Sprintf("mig%d", i), mc, o.Runs, false); err != nil {
			return nil, err
		}
		if r.Insecure, err = vdcRuns(ctx, dc.c, fmt.Sprintf("mig%d", i), mc, o.Runs, true); err != nil {
			return nil, err
		}
		r.Ratio, r.RatioInsecure = r.Vdc.EndToEnd/r.PlainTLS.EndToEnd, r.Insecure.EndToEnd/r.Plain.EndToEnd
	}
	res.Rows = rows
	return res, nil
}

// plainRuns times runs plain QEMU migrations of a guest (over TLS with
// the certificates in tlsDir, if set), each in dir-RUN.
func plainRuns(ctx context.Context, guest testguest.Result, accel string, c MigrateCase, runs int, dir, tlsDir string) (MigrateTimes, error) {
	var times []MigrateTimes
	for r := 0; r < runs; r++ {
		t, err := plainMigrate(ctx, guest, accel, c, fmt.Sprintf("%s-%d", dir, r), tlsDir)
		if err != nil {
			return MigrateTimes{}, fmt.Errorf("plain QEMU, %s guest: %w", c, err)
		}
		times = append(times, t)
	}
	return medianTimes(times), nil
}

// vdcRuns times runs migrations through vdc, each of a fresh VM as on the
// plain side (a QEMU's first migration is its slowest): VMs prefix-RUN,
// with -insecure added when insecure.
func vdcRuns(ctx context.Context, c *client.Client, prefix string, mc MigrateCase, runs int, insecure bool) (MigrateTimes, error) {
	var times []MigrateTimes
	for r := 0; r < runs; r++ {
		name := fmt.Sprintf("%s-%d", prefix, r)
		if insecure {
			name += "-insecure"
		}
		if err := vdcGuest(ctx, c, name, mc); err != nil {
			return MigrateTimes{}, err
		}
		t, err := vdcMigrate(ctx, c, name, mc.Dirty, insecure)
		if err != nil {
			return MigrateTimes{}, err
		}
		times = append(times, t)
		if t, err := c.Delete(ctx, api.KindVM, name, map[string][]string{"force": {"true"}}); err == nil {
			_, _ = c.Wait(ctx, t)
		}
	}
	return medianTimes(times), nil
}

// migrateDatacenter runs a server and two QEMU agents on this machine,
// with the test image uploaded. A datacenter it returns with an error is
// still to stop.
func migrateDatacenter(ctx context.Context, dir, accel string, guest testguest.Result) (*datacenter, error) {
	dc, err := startDC(ctx, dir)
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"host-1", "host-2"} {
		if _, err := dc.agent(ctx, h, 1, "--driver", "qemu", "--accel", accel, "--guest-poll", "200ms"); err != nil {
			return dc, err
		}
	}
	if err := dc.waitHosts(ctx, 2); err != nil {
		return dc, err
	}
	return dc, dc.uploadTestImage(ctx, guest)
}

// vdcGuest starts a VM of the test image on host-1 and waits for its boot
// to settle (and for its dirtying loop to run).
func vdcGuest(ctx context.Context, c *client.Client, name string, mc MigrateCase) error {
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
func vdcMigrate(ctx context.Context, c *client.Client, name string, dirty, insecure bool) (MigrateTimes, error) {
	vm, err := c.GetVM(ctx, name)
	if err != nil {
		return MigrateTimes{}, err
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
		return MigrateTimes{}, fmt.Errorf("migrate vm %s to %s: %w", name, to, err)
	}
	var r api.MigrateResult
	if err := json.Unmarshal(t.Result, &r); err != nil {
		return MigrateTimes{}, fmt.Errorf("migrate vm %s: result %s: %w", name, t.Result, err)
	}
	return MigrateTimes{Total: float64(r.TotalMs), Downtime: float64(r.DowntimeMs), EndToEnd: float64(took.Microseconds()) / 1000,
		Prepare: float64(r.PrepareMs), Switch: float64(r.SwitchMs)}, nil
}

func medianTimes(runs []MigrateTimes) MigrateTimes {
	pick := func(f func(MigrateTimes) float64) float64 {
		d := make([]time.Duration, len(runs))
		for i, r := range runs {
			d[i] = time.Duration(f(r) * float64(time.Millisecond))
		}
		m, _ := median(d)
		return m
	}
	return MigrateTimes{
		Total:    pick(func(t MigrateTimes) float64 { return t.Total }),
		Downtime: pick(func(t MigrateTimes) float64 { return t.Downtime }),
		EndToEnd: pick(func(t MigrateTimes) float64 { return t.EndToEnd }),
		Prepare:  pick(func(t MigrateTimes) float64 { return t.Prepare }),
		Switch:   pick(func(t MigrateTimes) float64 { return t.Switch }),
	}
}
