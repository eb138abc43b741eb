package disk

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Header is what a qcow2 file's header says of it, read without running
// qemu-img: cheap enough to do for every disk of every VM on each
// heartbeat.
type Header struct {
	// VirtualSize is the disk's size as the guest sees it.
	VirtualSize int64
	// Backing is the backing file, absolute ("" for none); a relative
	// name in the header is resolved against the file's directory.
	Backing string
}

// ReadHeader reads a qcow2 header. A file that is not qcow2 (a raw base
// image) has no backing file: its size is its length.
func ReadHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	var h [32]byte
	if _, err := io.ReadFull(f, h[:]); err != nil || string(h[:4]) != "QFI\xfb" {
		fi, serr := f.Stat()
		if serr != nil {
			return Header{}, serr
		}
		return Header{VirtualSize: fi.Size()}, nil
	}
	off := binary.BigEndian.Uint64(h[8:16])
	n := binary.BigEndian.Uint32(h[16:20])
	out := Header{VirtualSize: int64(binary.BigEndian.Uint64(h[24:32]))}
	if off == 0 || n == 0 {
		return out, nil
	}
	if n > 4096 {
		return out, fmt.Errorf("qcow2 header of %s: backing file name of %d bytes", path, n)
	}
	name := make([]byte, n)
	if _, err := f.ReadAt(name, int64(off)); err != nil {
		return out, fmt.Errorf("qcow2 header of %s: %w", path, err)
	}
	out.Backing = string(name)
	if !filepath.IsAbs(out.Backing) {
		out.Backing = filepath.Join(filepath.Dir(path), out.Backing)
	}
	return out, nil
}
