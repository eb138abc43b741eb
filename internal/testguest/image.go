package testguest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// image is the initramfs being assembled: guest path (no leading slash) to
// what goes there. Building it in memory first lets later additions (our
// scripts) replace earlier ones (busybox applet links) and lets the writer
// emit parents before children.
type image map[string]*imageEntry

type imageEntry struct {
	typ    uint32 // cpioType*
	perm   uint32
	data   []byte // regular file content, unless src is set
	src    string // host file to copy, read at write time
	target string // symlink target
	major  uint32 // character devices
	minor  uint32
}

func (im image) dirs(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := im[d]; !ok {
			im[d] = &imageEntry{typ: cpioTypeDir, perm: 0o755}
		}
	}
}

func (im image) put(p string, e *imageEntry) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	im.dirs(p)
	im[p] = e
}

func (im image) Dir(p string, perm uint32) {
	im.put(p, &imageEntry{typ: cpioTypeDir, perm: perm})
}

func (im image) File(p string, perm uint32, data []byte) {
	im.put(p, &imageEntry{typ: cpioTypeRegular, perm: perm, data: data})
}

func (im image) HostFile(p string, perm uint32, src string) {
	im.put(p, &imageEntry{typ: cpioTypeRegular, perm: perm, src: src})
}

func (im image) Symlink(p, target string) {
	im.put(p, &imageEntry{typ: cpioTypeSymlink, perm: 0o777, target: target})
}

func (im image) CharDev(p string, perm uint32, major, minor uint32) {
	im.put(p, &imageEntry{typ: cpioTypeChar, perm: perm, major: major, minor: minor})
}

func (im image) has(p string) bool {
	_, ok := im[strings.TrimPrefix(path.Clean("/"+p), "/")]
	return ok
}

// writeCPIO writes the image as a newc archive. Sorted names put every
// directory before its contents (a prefix sorts first).
func (im image) writeCPIO(w io.Writer) error {
	names := make([]string, 0, len(im))
	for n := range im {
		names = append(names, n)
	}
	sort.Strings(names)
	cw := newCPIOWriter(w)
	for _, n := range names {
		e := im[n]
		var err error
		switch e.typ {
		case cpioTypeDir:
			err = cw.Dir(n, e.perm)
		case cpioTypeSymlink:
			err = cw.Symlink(n, e.target)
		case cpioTypeChar:
			err = cw.CharDev(n, e.perm, e.major, e.minor)
		case cpioTypeRegular:
			if e.src == "" {
				err = cw.File(n, e.perm, int64(len(e.data)), bytes.NewReader(e.data))
				break
			}
			err = writeHostFile(cw, n, e)
		default:
			err = fmt.Errorf("initramfs entry %s: unknown type %o", n, e.typ)
		}
		if err != nil {
			return err
		}
	}
	return cw.Close()
}

func writeHostFile(cw *cpioWriter, name string, e *imageEntry) error {
	// Open follows symlinks: a library listed as libfoo.so.1 is stored as
	// the real file under that name.
	f, err := os.Open(e.src)
	if err != nil {
		return fmt.Errorf("initramfs file /%s: %w", name, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("initramfs file /%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("initramfs file /%s: %s is not a regular file", name, e.src)
	}
	return cw.File(name, e.perm, fi.Size(), f)
}
