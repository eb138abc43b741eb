package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
)

type benchStorage struct {
	runs  int
	data  string
	keep  string
	large string
}

// storageResult is what `vdc bench storage` reports.
type storageResult struct {
	Runs int `json:"runs"`
	// Linked clones: API request to finished task, by base size.
	LinkedSmallMs  float64 `json:"linkedClone1GiBMedianMs"`
	LinkedLargeMs  float64 `json:"linkedClone100GiBMedianMs"`
	LinkedSmallMax float64 `json:"linkedClone1GiBMaxMs"`
	LinkedLargeMax float64 `json:"linkedClone100GiBMaxMs"`
	// Full clone of a disk holding DataBytes, against plain copies of the
	// same file.
	DataBytes      int64   `json:"dataBytes"`
	FullCloneMs    float64 `json:"fullCloneMedianMs"`
	QemuImgMs      float64 `json:"qemuImgConvertMedianMs"`
	CpSparseMs     float64 `json:"cpSparseMedianMs"`
	FullCloneMiBps float64 `json:"fullCloneMiBps"`
	RatioQemuImg   float64 `json:"ratioToQemuImg"`
	RatioCp        float64 `json:"ratioToCpSparse"`
	// A fresh thin disk of the large size, as the host measured it.
	FreshThinBytes int64 `json:"freshThin100GiBAllocatedBytes"`
}

func newBenchStorageCmd(g *globals) *cobra.Command {
	var b benchStorage
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
			fmt.Fprintf(g.stdout, `vdc bench storage: %d runs each
  linked clone, 1 GiB base:              median %.0f ms (max %.0f)
  linked clone, %s base:            median %.0f ms (max %.0f)
  full clone of %s of data:          median %.0f ms (%.0f MiB/s)
  qemu-img convert of the same file:    median %.0f ms   ratio vdc / qemu-img %.2f
  cp --sparse=always of the same file:  median %.0f ms   ratio vdc / cp %.2f
  a fresh %s thin disk takes:       %s
`, res.Runs, res.LinkedSmallMs, res.LinkedSmallMax, b.large, res.LinkedLargeMs, res.LinkedLargeMax,
				api.Size(res.DataBytes), res.FullCloneMs, res.FullCloneMiBps, res.QemuImgMs, res.RatioQemuImg, res.CpSparseMs, res.RatioCp,
				b.large, api.Size(res.FreshThinBytes))
			return nil
		},
	}
	cmd.Flags().IntVar(&b.runs, "runs", 5, "clones to time for each measure")
	cmd.Flags().StringVar(&b.data, "data", "1GiB", "data written into each base disk")
	cmd.Flags().StringVar(&b.large, "large", "100GiB", "virtual size of the large base and of the fresh thin disk")
	cmd.Flags().StringVar(&b.keep, "dir", "", "keep the benchmark's data in this directory (default: a temp dir, removed)")
	return cmd
}

func (b *benchStorage) run(ctx context.Context, g *globals) (*storageResult, error) {
	if err := qemu.Available(""); err != nil {
		return nil, err
	}
	dataBytes, err := api.ParseSize(b.data)
	if err != nil {
		return nil, fmt.Errorf("--data: %w", err)
	}
	large, err := api.ParseSize(b.large)
	if err != nil {
		return nil, fmt.Errorf("--large: %w", err)
	}
	dir, cleanup, err := benchDir(b.keep, "vdc-bench-storage")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res := &storageResult{Runs: b.runs, DataBytes: int64(dataBytes)}
	// The bases: thin qcow2 files with data written all over their first
	// part (a pattern, so nothing is left sparse).
	bases := map[string]api.Size{"small": api.MustSize("1GiB"), "large": large}
	for name, size := range bases {
		p := filepath.Join(dir, name+".qcow2")
		if err := disk.Create(ctx, p, int64(size)); err != nil {
			return nil, err
		}
		fmt.Fprintf(g.stderr, "writing %s into a %s base...\n", api.Size(dataBytes), size)
		if out, err := exec.CommandContext(ctx, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0xab 0 %d", min(int64(dataBytes), int64(size))), p).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu-io: %v: %s", err, out)
		}
	}
	dc, err := startBenchDC(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer dc.stop()
	c := dc.c
	if _, err := dc.agent(ctx, "bench", 1, "--driver", "qemu", "--accel", "tcg"); err != nil {
		return nil, err
	}
	if err := dc.waitHosts(ctx, 1); err != nil {
		return nil, err
	}
	defer deleteBenchVMs(context.Background(), c)
	noNIC := []api.NICRequest{}
	for name := range bases {
		fmt.Fprintf(g.stderr, "making template %s...\n", name)
		if err := createAndWait(ctx, c, api.VMCreateRequest{Name: name, CPUs: 1, Memory: api.MustSize("128MiB"), NICs: noNIC,
			Image: filepath.Join(dir, name+".qcow2")}); err != nil {
			return nil, err
		}
		if err := waitTask(ctx, c)(c.MarkTemplate(ctx, name, true)); err != nil {
			return nil, err
		}
	}
	timeClone := func(tmpl, name string, linked bool) (time.Duration, error) {
		t0 := time.Now()
		err := waitTask(ctx, c)(c.CreateVM(ctx, api.VMCreateRequest{Name: name, FromTemplate: tmpl, Linked: linked}))
		return time.Since(t0), err
	}
	for _, name := range []string{"small", "large"} {
		fmt.Fprintf(g.stderr, "timing %d linked clones of the %s base...\n", b.runs, name)
		var ds []time.Duration
		for i := 0; i < b.runs; i++ {
			d, err := timeClone(name, fmt.Sprintf("%s-linked%d", name, i), true)
			if err != nil {
				return nil, err
			}
			ds = append(ds, d)
		}
		med, _ := median(ds)
		mx := float64(slicesMax(ds).Microseconds()) / 1000
		if name == "small" {
			res.LinkedSmallMs, res.LinkedSmallMax = med, mx
		} else {
			res.LinkedLargeMs, res.LinkedLargeMax = med, mx
		}
	}
	fmt.Fprintf(g.stderr, "timing %d full clones and plain copies...\n", b.runs)
	src := filepath.Join(dir, "datastore1")
	small, err := c.GetVM(ctx, "small")
	if err != nil {
		return nil, err
	}
	srcFile := filepath.Join(src, small.Spec.Disks[0].Path)
	var full, conv, cp []time.Duration
	// Each copy starts with no dirty data in the page cache and is timed
	// until its data is on disk (sync): otherwise one copy's write-back
	// slows the next.
	syncAll := func() { _ = exec.CommandContext(ctx, "sync").Run() }
	for i := 0; i < b.runs; i++ {
		syncAll()
		t0 := time.Now()
		if _, err := timeClone("small", fmt.Sprintf("full%d", i), false); err != nil {
			return nil, err
		}
		syncAll()
		full = append(full, time.Since(t0))
		for _, plain := range []struct {
			out  *[]time.Duration
			args []string
		}{
			{&conv, []string{"qemu-img", "convert", "-O", "qcow2", srcFile, filepath.Join(dir, "conv.qcow2")}},
			{&cp, []string{"cp", "--sparse=always", srcFile, filepath.Join(dir, "cp.qcow2")}},
		} {
			dst := plain.args[len(plain.args)-1]
			_ = os.Remove(dst)
			syncAll()
			t0 := time.Now()
			if out, err := exec.CommandContext(ctx, plain.args[0], plain.args[1:]...).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("%v: %v: %s", plain.args, err, out)
			}
			syncAll()
			*plain.out = append(*plain.out, time.Since(t0))
			_ = os.Remove(dst)
		}
	}
	res.FullCloneMs, _ = median(full)
	res.QemuImgMs, _ = median(conv)
	res.CpSparseMs, _ = median(cp)
	res.FullCloneMiBps = float64(dataBytes) / (1 << 20) / (res.FullCloneMs / 1000)
	res.RatioQemuImg = res.FullCloneMs / res.QemuImgMs
	res.RatioCp = res.FullCloneMs / res.CpSparseMs

	if err := createAndWait(ctx, c, api.VMCreateRequest{Name: "fresh", CPUs: 1, Memory: api.MustSize("128MiB"), NICs: noNIC,
		Disks: []api.DiskRequest{{Size: large}}}); err != nil {
		return nil, err
	}
	vm, err := c.GetVM(ctx, "fresh")
	if err != nil {
		return nil, err
	}
	for _, d := range vm.Status.Disks {
		res.FreshThinBytes = int64(d.AllocatedBytes)
	}
	return res, nil
}

// waitTask waits for the task a call returned.
func waitTask(ctx context.Context, c *client.Client) func(*api.Task, error) error {
	return func(t *api.Task, err error) error {
		if err == nil {
			_, err = c.Wait(ctx, t)
		}
		return err
	}
}

func slicesMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}
