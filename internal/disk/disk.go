// Package disk makes and inspects VM disk files with qemu-img: thin qcow2
// disks, overlays on a base image, copies from foreign formats, and what a
// file really holds (format from its content, virtual and allocated size).
package disk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// QemuImg is the qemu-img binary.
var QemuImg = "qemu-img"

// ErrNoQemuImg says qemu-img is not installed.
var ErrNoQemuImg = errors.New("qemu-img is not installed (apt-get install qemu-utils)")

// Available reports whether qemu-img can be run.
func Available() bool {
	_, err := exec.LookPath(QemuImg)
	return err == nil
}

// Info is what a disk file holds.
type Info struct {
	Format        string `json:"format"`
	VirtualSize   int64  `json:"virtual-size"`
	ActualSize    int64  `json:"actual-size"`
	BackingFile   string `json:"backing-filename,omitempty"`
	BackingFormat string `json:"backing-filename-format,omitempty"`
	DirtyFlag     bool   `json:"dirty-flag,omitempty"`
}

func run(ctx context.Context, what string, args ...string) ([]byte, error) {
	if !Available() {
		return nil, ErrNoQemuImg
	}
	cmd := exec.CommandContext(ctx, QemuImg, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		msg = strings.TrimPrefix(msg, "qemu-img: ")
		if msg == "" {
			msg = err.Error()
		}
		return nil, fmt.Errorf("%s: %s", what, msg)
	}
	return out.Bytes(), nil
}

// Inspect reads a disk file's format (from its content, not its name) and
// sizes. It works on disks in use by a running VM.
func Inspect(ctx context.Context, path string) (Info, error) {
	var info Info
	if _, err := os.Stat(path); err != nil {
		return info, fmt.Errorf("inspect disk %s: %w", path, err)
	}
	out, err := run(ctx, "inspect disk "+path, "info", "--force-share", "--output=json", path)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("inspect disk %s: %w", path, err)
	}
	return info, nil
}

// Check verifies a qcow2 file's metadata (a no-op for raw files).
func Check(ctx context.Context, path string) error {
	_, err := run(ctx, "check disk "+path, "check", "--force-share", path)
	return err
}

// Create makes a thin qcow2 disk of size bytes.
func Create(ctx context.Context, path string, size int64) error {
	_, err := run(ctx, "create disk "+path, "create", "-q", "-f", "qcow2", path, strconv.FormatInt(size, 10))
	return err
}

// CreateOverlay makes a thin qcow2 disk whose unwritten data comes from a
// base image (a linked clone); size 0 keeps the base's size.
func CreateOverlay(ctx context.Context, path, base, baseFormat string, size int64) error {
	args := []string{"create", "-q", "-f", "qcow2", "-b", base, "-F", baseFormat, path}
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	_, err := run(ctx, "create overlay "+path+" on "+base, args...)
	return err
}

// Convert copies a disk of any format qemu-img reads into a new qcow2 file,
// keeping it sparse.
func Convert(ctx context.Context, src, srcFormat, dst string) error {
	_, err := run(ctx, "copy disk "+src+" to "+dst, "convert", "-q", "-f", srcFormat, "-O", "qcow2", src, dst)
	return err
}

// Resize grows a disk to size bytes.
func Resize(ctx context.Context, path string, size int64) error {
	_, err := run(ctx, "resize disk "+path, "resize", "-q", path, strconv.FormatInt(size, 10))
	return err
}

// Allocated is how many bytes a file really takes on disk (sparse files
// take less than their length).
func Allocated(path string) (int64, error) {
	return allocated(path)
}
