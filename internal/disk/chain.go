package disk

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// CreateThick makes a qcow2 disk whose whole size is allocated now
// (preallocation=falloc: the space is reserved, not written).
func CreateThick(ctx context.Context, path string, size int64) error {
	_, err := run(ctx, "create thick disk "+path, "create", "-q", "-f", "qcow2", "-o", "preallocation=falloc", path, strconv.FormatInt(size, 10))
	return err
}

// CreateOverlayOn makes an overlay on a base that may be in use by a
// running VM: the base is not opened (its format and the size are given).
func CreateOverlayOn(ctx context.Context, path, base, baseFormat string, size int64) error {
	_, err := run(ctx, "create overlay "+path+" on "+base, "create", "-q", "-f", "qcow2", "-u", "-b", base, "-F", baseFormat,
		path, strconv.FormatInt(size, 10))
	return err
}

// Commit writes a file's data into its backing file base (which must be
// in its chain). The file itself is left as it was: the caller removes it
// once nothing points at it.
func Commit(ctx context.Context, top, base string) error {
	_, err := run(ctx, "merge "+top+" into "+base, "commit", "-q", "-d", "-b", base, top)
	return err
}

// SetBacking makes a qcow2 file point at another backing file holding the
// same data (after a merge); no data is copied.
func SetBacking(ctx context.Context, path, backing, backingFormat string) error {
	_, err := run(ctx, "rebase "+path+" onto "+backing, "rebase", "-q", "-u", "-b", backing, "-F", backingFormat, path)
	return err
}

// Chain lists a file and its backing files, top first. It works on files
// a running VM uses.
func Chain(ctx context.Context, path string) ([]ChainEntry, error) {
	out, err := run(ctx, "inspect disk chain "+path, "info", "--force-share", "--backing-chain", "--output=json", path)
	if err != nil {
		return nil, err
	}
	var infos []ChainEntry
	if err := json.Unmarshal(out, &infos); err != nil {
		return nil, fmt.Errorf("inspect disk chain %s: %w", path, err)
	}
	return infos, nil
}

// ChainEntry is one file of a backing chain.
type ChainEntry struct {
	Filename string `json:"filename"`
	Info
}

// ConvertProgress copies src into a new qcow2 file like Convert, calling
// progress with the share done (0-100) as qemu-img reports it.
func ConvertProgress(ctx context.Context, src, srcFormat, dst string, progress func(pct float64)) error {
	return runProgress(ctx, fmt.Sprintf("copy disk %s to %s", src, dst), func(f float64) {
		if progress != nil {
			progress(f * 100)
		}
	}, "convert", "-p", "-f", srcFormat, "-O", "qcow2", src, dst)
}
