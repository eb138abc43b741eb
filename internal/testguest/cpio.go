package testguest

import (
	"fmt"
	"io"
	"strings"
)

// Mode type bits as the kernel's initramfs unpacker reads them (stat.h
// values), and permissions are raw Unix bits (0o1777 for /tmp): io/fs
// uses its own bit layout for both.
const (
	cpioTypeDir     = 0o040000
	cpioTypeRegular = 0o100000
	cpioTypeSymlink = 0o120000
	cpioTypeChar    = 0o020000
)

// cpioWriter writes a "newc" (SVR4, no checksum) archive: the only format
// the kernel unpacks into the initramfs. Entries are written as given; the
// caller orders them so that directories come before what they hold,
// because the kernel does not create missing parents.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	err error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	// Inode 0 is avoided: some readers treat it as "no inode".
	return &cpioWriter{w: w, ino: 1}
}

// cpioHeader holds the fields of one entry that vary; everything else
// (uid/gid 0, mtime 0 for reproducible archives, device 0) is fixed.
type cpioHeader struct {
	name     string
	mode     uint32 // type bits | permission bits
	size     int64
	nlink    uint32
	rdevMaj  uint32
	rdevMin  uint32
	linkname string // symlink target, written as the entry's data
}

func (c *cpioWriter) Dir(name string, perm uint32) error {
	return c.entry(cpioHeader{name: name, mode: cpioTypeDir | perm&0o7777, nlink: 2}, nil)
}

// File writes a regular file of exactly size bytes read from r.
func (c *cpioWriter) File(name string, perm uint32, size int64, r io.Reader) error {
	return c.entry(cpioHeader{name: name, mode: cpioTypeRegular | perm&0o7777, size: size, nlink: 1}, r)
}

func (c *cpioWriter) Symlink(name, target string) error {
	return c.entry(cpioHeader{name: name, mode: cpioTypeSymlink | 0o777, size: int64(len(target)), nlink: 1, linkname: target}, nil)
}

func (c *cpioWriter) CharDev(name string, perm uint32, major, minor uint32) error {
	return c.entry(cpioHeader{name: name, mode: cpioTypeChar | perm&0o7777, nlink: 1, rdevMaj: major, rdevMin: minor}, nil)
}

// Close writes the trailer. It does not close the underlying writer.
func (c *cpioWriter) Close() error {
	return c.entry(cpioHeader{name: "TRAILER!!!", nlink: 1}, nil)
}

func (c *cpioWriter) entry(h cpioHeader, data io.Reader) error {
	if c.err != nil {
		return c.err
	}
	c.err = c.write(h, data)
	return c.err
}

func (c *cpioWriter) write(h cpioHeader, data io.Reader) error {
	name := strings.TrimPrefix(h.name, "/")
	if name == "" || strings.ContainsRune(name, 0) {
		return fmt.Errorf("cpio entry %q: invalid name", h.name)
	}
	if h.size < 0 || h.size > 0xffffffff {
		return fmt.Errorf("cpio entry %q: size %d does not fit newc's 32-bit field", name, h.size)
	}
	ino := c.ino
	c.ino++
	if h.name == "TRAILER!!!" {
		ino = 0
	}
	// newc: magic, then 13 fields as 8 hex digits each.
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		ino, h.mode, 0, 0, h.nlink, 0, uint32(h.size),
		0, 0, h.rdevMaj, h.rdevMin, len(name)+1, 0)
	// Header and name together, then the data, are each padded to 4 bytes.
	buf := make([]byte, 0, pad4(len(hdr)+len(name)+1))
	buf = append(buf, hdr...)
	buf = append(buf, name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(len(buf))-len(buf))...)
	if _, err := c.w.Write(buf); err != nil {
		return fmt.Errorf("cpio entry %q: %w", name, err)
	}
	switch {
	case h.linkname != "":
		data = strings.NewReader(h.linkname)
	case data == nil && h.size != 0:
		return fmt.Errorf("cpio entry %q: %d bytes announced, no data", name, h.size)
	}
	if h.size > 0 {
		n, err := io.CopyN(c.w, data, h.size)
		if err != nil {
			return fmt.Errorf("cpio entry %q: wrote %d of %d bytes: %w", name, n, h.size, err)
		}
	}
	if p := pad4(int(h.size % 4)); p > int(h.size%4) {
		if _, err := c.w.Write(make([]byte, p-int(h.size%4))); err != nil {
			return fmt.Errorf("cpio entry %q: %w", name, err)
		}
	}
	return nil
}

func pad4(n int) int { return (n + 3) &^ 3 }
