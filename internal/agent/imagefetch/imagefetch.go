// Package imagefetch brings a disk image onto a host's datastore: from a
// URL or a file, checked (its SHA-256 when one is given, a standalone
// qcow2 or raw disk qemu-img reads) before it takes its name.
package imagefetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/staging"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Result is what was fetched.
type Result struct {
	SizeBytes   int64
	SHA256      string
	Format      string
	VirtualSize int64
}

// Fetch fetches an image next to its final name, checks it is a
// standalone qcow2 or raw disk qemu-img reads, and renames it into place.
// source names it in messages; from is what is read (source, or the file
// it resolves to).
func Fetch(ctx context.Context, source, from, path, wantSum string, progress func(done, total int64)) (*Result, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	var in io.ReadCloser
	var total int64 = -1
	if strings.HasPrefix(source, "http://") || strings.HasPrefix(source, "https://") {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", source, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("download %s: HTTP %s", source, resp.Status)
		}
		in, total = resp.Body, resp.ContentLength
	} else {
		f, err := os.Open(from)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", source, err)
		}
		if fi, err := f.Stat(); err == nil {
			total = fi.Size()
		}
		in = f
	}
	defer in.Close()
	if free, err := freeSpace(filepath.Dir(path)); err == nil && total > 0 && free < total+64<<20 {
		return nil, fmt.Errorf("the datastore has %s free; the image takes %s: %w", api.Size(free), api.Size(total), hypervisor.ErrNoSpace)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".import*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), staging.NewProgressReader(in, total, progress))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", source, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if wantSum != "" && !strings.EqualFold(sum, wantSum) {
		return nil, fmt.Errorf("%s has SHA-256 %s, not %s as expected", source, sum, wantSum)
	}
	info, err := disk.Inspect(ctx, tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("%s is not a disk image qemu-img can read: %w", source, err)
	}
	switch info.Format {
	case "qcow2":
		if err := disk.Check(ctx, tmp.Name()); err != nil {
			return nil, fmt.Errorf("%s is a damaged qcow2 image: %w", source, err)
		}
	case "raw":
		// qemu-img reads any file as raw: a disk is whole sectors at least.
		if n < 1<<20 || n%512 != 0 {
			return nil, fmt.Errorf("%s is not a disk image: as raw it would be %d bytes, not a whole number of 512-byte sectors of at least 1 MiB", source, n)
		}
	default:
		return nil, fmt.Errorf("%s is a %s image; import qcow2 or raw images (convert others with vdc import disk)", source, info.Format)
	}
	if info.BackingFile != "" {
		return nil, fmt.Errorf("%s depends on a backing file (%s); import a standalone image", source, info.BackingFile)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return &Result{SizeBytes: n, SHA256: sum, Format: info.Format, VirtualSize: info.VirtualSize}, nil
}

func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}
