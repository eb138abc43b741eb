package testguest

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// Under TCG a Debian bzImage spends about two seconds decompressing itself
// (xz) before the kernel proper starts. QEMU can instead boot the
// uncompressed kernel directly through its PVH entry point (an ELF note
// that kernels built with CONFIG_PVH carry), which skips both the
// decompressor and the real-mode setup. pvhKernel extracts that ELF.

// xenElfnotePhys32Entry is the note type of the 32-bit PVH entry point.
const xenElfnotePhys32Entry = 18

// pvhKernel returns the path of the uncompressed, PVH-bootable kernel inside
// bzImage, extracting it into cacheDir on first use. It fails when the
// kernel cannot boot that way or its compression has no decoder here; the
// caller then boots the bzImage.
func pvhKernel(ctx context.Context, bzImage, cacheDir string) (string, error) {
	data, err := os.ReadFile(bzImage)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	cached := filepath.Join(cacheDir, "vmlinux-"+hex.EncodeToString(sum[:8]))
	if _, err := os.Stat(cached); err == nil {
		return cached, nil
	}
	payload, size, err := bzImagePayload(data)
	if err != nil {
		return "", err
	}
	vmlinux, err := decompress(ctx, payload)
	if err != nil {
		return "", err
	}
	if uint32(len(vmlinux)) != size {
		return "", fmt.Errorf("kernel payload decompressed to %d bytes, header says %d", len(vmlinux), size)
	}
	if err := checkPVH(vmlinux); err != nil {
		return "", err
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	err = writeAtomic(cached, func(w io.Writer) error {
		_, err := w.Write(vmlinux)
		return err
	})
	if err != nil {
		return "", err
	}
	return cached, nil
}

// bzImagePayload finds the compressed kernel in a bzImage (boot protocol
// 2.08+: payload_offset/payload_length in the setup header) and the
// uncompressed size the kernel build appends to it.
func bzImagePayload(img []byte) (payload []byte, size uint32, err error) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, 0, errors.New("not a bzImage (no HdrS header)")
	}
	if v := binary.LittleEndian.Uint16(img[0x206:]); v < 0x208 {
		return nil, 0, fmt.Errorf("boot protocol %#x has no payload fields", v)
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if n < 4 || start < 0 || start+n > len(img) {
		return nil, 0, fmt.Errorf("payload [%d, +%d) outside the %d-byte image", start, n, len(img))
	}
	p := img[start : start+n]
	// The last four bytes are the uncompressed size, not compressed data.
	return p[:n-4], binary.LittleEndian.Uint32(p[n-4:]), nil
}

// decompress decodes the kernel payload by its magic number: gzip and
// bzip2 in Go, xz, lzma and zstd (Debian, Fedora, Ubuntu) with their tools.
func decompress(ctx context.Context, p []byte) ([]byte, error) {
	switch {
	case bytes.HasPrefix(p, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(bytes.NewReader(p))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	case bytes.HasPrefix(p, []byte("BZh")):
		return io.ReadAll(bzip2.NewReader(bytes.NewReader(p)))
	case bytes.HasPrefix(p, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return decompressTool(ctx, p, "xz", "-dc")
	case bytes.HasPrefix(p, []byte{0x5d, 0, 0}):
		return decompressTool(ctx, p, "xz", "--format=lzma", "-dc")
	case bytes.HasPrefix(p, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return decompressTool(ctx, p, "zstd", "-dc")
	}
	return nil, fmt.Errorf("kernel payload compression % x not supported", p[:min(len(p), 4)])
}

func decompressTool(ctx context.Context, p []byte, tool string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("decompress kernel: %s is not installed", tool)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Stdin = bytes.NewReader(p)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("decompress kernel with %s: %w: %s", tool, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.Bytes(), nil
}

// checkPVH makes sure the ELF carries the Xen PVH entry note that QEMU
// looks for; without it QEMU refuses the file.
func checkPVH(vmlinux []byte) error {
	f, err := elf.NewFile(bytes.NewReader(vmlinux))
	if err != nil {
		return fmt.Errorf("uncompressed kernel: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(prog.Open())
		if err != nil {
			return fmt.Errorf("uncompressed kernel notes: %w", err)
		}
		if hasNote(notes, "Xen", xenElfnotePhys32Entry) {
			return nil
		}
	}
	return errors.New("kernel has no PVH entry point (CONFIG_PVH)")
}

// hasNote scans ELF notes: namesz, descsz, type, then name and desc, each
// padded to four bytes.
func hasNote(notes []byte, owner string, typ uint32) bool {
	for len(notes) >= 12 {
		namesz := int(binary.LittleEndian.Uint32(notes))
		descsz := int(binary.LittleEndian.Uint32(notes[4:]))
		t := binary.LittleEndian.Uint32(notes[8:])
		notes = notes[12:]
		if namesz < 0 || descsz < 0 || pad4(namesz)+pad4(descsz) > len(notes) {
			return false
		}
		name := string(bytes.TrimRight(notes[:namesz], "\x00"))
		if name == owner && t == typ {
			return true
		}
		notes = notes[pad4(namesz)+pad4(descsz):]
	}
	return false
}
