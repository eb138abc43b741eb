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
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu"
)

// StorageOptions are the settings of Storage.
type StorageOptions struct {
	Runs     int       // clones to time for each measure
	Data     api.Size  // data written into each base disk
	Large    api.Size  // virtual size of the large base and of the fresh thin disk
	Dir      string    // keep the data here (default: a temp dir, removed)
	Progress io.Writer // progress lines (nil: none)
}

// StorageResult is what `vdc bench storage` reports.
type StorageResult struct {
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

// Storage starts a `vdc server` and a `vdc agent --driver qemu`, then:
//  1. makes two templates whose disks hold o.Data of written data, one of
//     1 GiB and one of o.Large virtual size, and times `vm create
//     --from-template T --linked` (request to finished task) o.Runs times
//     on each;
//  2. times a full clone of the 1 GiB VM, and, on the same file, plain
//     `qemu-img convert -O qcow2` and `cp --sparse=always` (each from a
//     clean page cache, until its data is synced to disk);
//  3. creates a VM with a fresh thin disk of o.Large and reads what the
//     host measures it takes.
func Storage(ctx context.Context, o StorageOptions) (*StorageResult, error) {
	if o.Runs < 1 {
		return nil, errors.New("bench storage: runs must be at least 1")
	}
	if err := qemu.Available(""); err != nil {
		return nil, err
	}
	w := progress(o.Progress)
	dir, cleanup, err := dataDir(o.Dir, "vdc-bench-storage")
	if err != nil {
		return nil, err
	}
	defer cleanup()
	res := &StorageResult{Runs: o.Runs, DataBytes: int64(o.Data)}
	bases := map[string]api.Size{"small": api.MustSize("1GiB"), "large": o.Large}
	// In the datastore: the server makes VMs only of files in one.
	basesDir := filepath.Join(dir, client.DefaultDatastore, "bases")
	if err := writeBases(ctx, w, basesDir, o.Data, bases); err != nil {
		return nil, err
	}
	dc, err := startDC(ctx, dir)
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
	defer deleteVMs(context.Background(), c)
	for name := range bases {
		fmt.Fprintf(w, "making template %s...\n", name)
		if err := createAndWait(ctx, c, api.VMCreateRequest{Name: name, CPUs: 1, Memory: api.MustSize("128MiB"), NICs: []api.NICRequest{},
			Image: filepath.Join(basesDir, name+".qcow2")}); err != nil {
			return nil, err
		}
		if err := waitTask(ctx, c)(c.MarkTemplate(ctx, name, true)); err != nil {
			return nil, err
		}
	}
	if err := timeLinkedClones(ctx, w, c, o.Runs, res); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "timing %d full clones and plain copies...\n", o.Runs)
	if err := timeFullClones(ctx, c, dir, o.Runs, res); err != nil {
		return nil, err
	}
	if err := createAndWait(ctx, c, api.VMCreateRequest{Name: "fresh", CPUs: 1, Memory: api.MustSize("128MiB"), NICs: []api.NICRequest{},
		Disks: []api.DiskRequest{{Size: o.Large}}}); err != nil {
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

// writeBases makes the bases, DIR/NAME.qcow2: thin qcow2 files with data
// written all over their first part (a pattern, so nothing is left sparse).
func writeBases(ctx context.Context, w io.Writer, dir string, data api.Size, bases map[string]api.Size) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, size := range bases {
		p := filepath.Join(dir, name+".qcow2")
		if err := disk.Create(ctx, p, int64(size)); err != nil {
			return err
		}
		fmt.Fprintf(w, "writing %s into a %s base...\n", data, size)
		if out, err := exec.CommandContext(ctx, "qemu-io", "-f", "qcow2", "-c", fmt.Sprintf("write -P 0xab 0 %d", min(int64(data), int64(size))), p).CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-io: %v: %s", err, out)
		}
	}
	return nil
}

// timeClone creates VM name from template tmpl and times it.
func timeClone(ctx context.Context, c *client.Client, tmpl, name string, linked bool) (time.Duration, error) {
	t0 := time.Now()
	err := waitTask(ctx, c)(c.CreateVM(ctx, api.VMCreateRequest{Name: name, FromTemplate: tmpl, Linked: linked}))
	return time.Since(t0), err
}

// timeLinkedClones times runs linked clones of each template.
func timeLinkedClones(ctx context.Context, w io.Writer, c *client.Client, runs int, res *StorageResult) error {
	for _, name := range []string{"small", "large"} {
		fmt.Fprintf(w, "timing %d linked clones of the %s base...\n", runs, name)
		var ds []time.Duration
		for i := 0; i < runs; i++ {
			d, err := timeClone(ctx, c, name, fmt.Sprintf("%s-linked%d", name, i), true)
			if err != nil {
				return err
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
	return nil
}

// timeFullClones times runs full clones of the small template against
// qemu-img convert and cp --sparse of its disk file.
func timeFullClones(ctx context.Context, c *client.Client, dir string, runs int, res *StorageResult) error {
	small, err := c.GetVM(ctx, "small")
	if err != nil {
		return err
	}
	srcFile := filepath.Join(dir, client.DefaultDatastore, small.Spec.Disks[0].Path)
	var full, conv, cp []time.Duration
	// Each copy starts with no dirty data in the page cache and is timed
	// until its data is on disk (sync): otherwise one copy's write-back
	// slows the next.
	syncAll := func() { _ = exec.CommandContext(ctx, "sync").Run() }
	for i := 0; i < runs; i++ {
		syncAll()
		t0 := time.Now()
		if _, err := timeClone(ctx, c, "small", fmt.Sprintf("full%d", i), false); err != nil {
			return err
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
				return fmt.Errorf("%v: %v: %s", plain.args, err, out)
			}
			syncAll()
			*plain.out = append(*plain.out, time.Since(t0))
			_ = os.Remove(dst)
		}
	}
	res.FullCloneMs, _ = median(full)
	res.QemuImgMs, _ = median(conv)
	res.CpSparseMs, _ = median(cp)
	res.FullCloneMiBps = float64(res.DataBytes) / (1 << 20) / (res.FullCloneMs / 1000)
	res.RatioQemuImg = res.FullCloneMs / res.QemuImgMs
	res.RatioCp = res.FullCloneMs / res.CpSparseMs
	return nil
}
