package testguest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

// cpioEntry is one entry as readNewc found it.
type cpioEntry struct {
	name         string
	mode         uint32
	nlink        uint32
	rdevMaj      uint32
	rdevMin      uint32
	data         []byte
	headerOffset int
}

// readNewc is an independent newc reader: it checks the layout the kernel
// expects (magic, 4-byte alignment of names and data, the trailer) rather
// than trusting the writer's own idea of it.
func readNewc(t *testing.T, archive []byte) []cpioEntry {
	t.Helper()
	var out []cpioEntry
	off := 0
	for {
		if off%4 != 0 {
			t.Fatalf("entry at %d is not 4-byte aligned", off)
		}
		if off+110 > len(archive) {
			t.Fatalf("truncated archive: header at %d, %d bytes total", off, len(archive))
		}
		hdr := archive[off : off+110]
		if string(hdr[:6]) != "070701" {
			t.Fatalf("bad magic %q at %d", hdr[:6], off)
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(string(hdr[6+8*i:6+8*i+8]), 16, 32)
			if err != nil {
				t.Fatalf("header field %d at %d: %v", i, off, err)
			}
			return uint32(v)
		}
		mode, nlink, size := field(1), field(4), int(field(6))
		rmaj, rmin, namesize := field(9), field(10), int(field(11))
		nameStart := off + 110
		name := string(archive[nameStart : nameStart+namesize])
		if !strings.HasSuffix(name, "\x00") {
			t.Fatalf("name %q at %d not NUL-terminated", name, off)
		}
		name = strings.TrimSuffix(name, "\x00")
		dataStart := pad4(nameStart + namesize)
		e := cpioEntry{name: name, mode: mode, nlink: nlink, rdevMaj: rmaj, rdevMin: rmin, headerOffset: off,
			data: archive[dataStart : dataStart+size]}
		off = pad4(dataStart + size)
		if name == "TRAILER!!!" {
			if off != len(archive) {
				t.Fatalf("%d bytes after the trailer", len(archive)-off)
			}
			return out
		}
		out = append(out, e)
	}
}

func TestCPIOWriterRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	files := map[string]string{
		"etc/a":     "",                           // empty
		"etc/b":     "x",                          // 1 byte: 3 bytes of padding
		"etc/c":     "four",                       // already aligned
		"bin/tool":  strings.Repeat("elf!", 1000), // bigger, aligned
		"bin/odd12": "twelve bytes.",              // 13 bytes
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.Dir("etc", 0o755))
	must(w.Dir("bin", 0o755))
	must(w.Dir("tmp", 0o1777))
	for _, name := range []string{"etc/a", "etc/b", "etc/c", "bin/tool", "bin/odd12"} {
		perm := uint32(0o644)
		if strings.HasPrefix(name, "bin/") {
			perm = 0o755
		}
		must(w.File(name, perm, int64(len(files[name])), strings.NewReader(files[name])))
	}
	must(w.Symlink("bin/sh", "/bin/busybox"))
	must(w.CharDev("dev/console", 0o600, 5, 1))
	must(w.Close())

	got := readNewc(t, buf.Bytes())
	want := []struct {
		name string
		mode uint32
	}{
		{"etc", 0o040755}, {"bin", 0o040755}, {"tmp", 0o041777},
		{"etc/a", 0o100644}, {"etc/b", 0o100644}, {"etc/c", 0o100644},
		{"bin/tool", 0o100755}, {"bin/odd12", 0o100755},
		{"bin/sh", 0o120777}, {"dev/console", 0o020600},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	inodes := map[string]bool{}
	for i, w := range want {
		e := got[i]
		if e.name != w.name || e.mode != w.mode {
			t.Errorf("entry %d = %s %o, want %s %o", i, e.name, e.mode, w.name, w.mode)
		}
		ino := string(buf.Bytes()[e.headerOffset+6 : e.headerOffset+14])
		if inodes[ino] {
			t.Errorf("entry %s reuses inode %s", e.name, ino)
		}
		inodes[ino] = true
		if data, ok := files[e.name]; ok && string(e.data) != data {
			t.Errorf("%s holds %q, want %q", e.name, e.data, data)
		}
	}
	if got[8].nlink != 1 || string(got[8].data) != "/bin/busybox" {
		t.Errorf("symlink: nlink %d target %q", got[8].nlink, got[8].data)
	}
	if got[9].rdevMaj != 5 || got[9].rdevMin != 1 {
		t.Errorf("console device = %d:%d, want 5:1", got[9].rdevMaj, got[9].rdevMin)
	}
	if got[0].nlink != 2 {
		t.Errorf("directory nlink = %d, want 2", got[0].nlink)
	}

	// A second opinion from a real cpio implementation, when there is one.
	bb, err := exec.LookPath("busybox")
	if err != nil {
		testenv.Skip(t, "busybox not installed: no cross-check with busybox cpio (apt-get install busybox-static)")
	}
	cmd := exec.Command(bb, "cpio", "-tv")
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox cpio -tv: %v\n%s", err, out)
	}
	listing := string(out)
	for _, line := range []string{"drwxrwxrwt", "bin/sh -> /bin/busybox", "crw-------", "-rwxr-xr-x"} {
		if !strings.Contains(listing, line) {
			t.Errorf("busybox cpio -tv output lacks %q:\n%s", line, listing)
		}
	}
	dir := t.TempDir()
	cmd = exec.Command(bb, "cpio", "-id", "etc/*", "bin/tool", "bin/odd12", "bin/sh")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(buf.Bytes())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -id: %v\n%s", err, out)
	}
	for name, data := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != data {
			t.Errorf("extracted %s = %q, %v; want %q", name, b, err, data)
		}
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "/bin/busybox" {
		t.Errorf("extracted symlink bin/sh -> %q, %v", target, err)
	}
}

func TestCPIOWriterErrors(t *testing.T) {
	w := newCPIOWriter(io.Discard)
	if err := w.File("short", 0o644, 10, strings.NewReader("abc")); err == nil {
		t.Error("a file shorter than announced was accepted")
	}
	if err := w.Dir("later", 0o755); err == nil {
		t.Error("writer kept going after an error")
	}
	if err := newCPIOWriter(io.Discard).Dir("/", 0o755); err == nil {
		t.Error("an empty name was accepted")
	}
}

func TestImageOrdersParentsFirst(t *testing.T) {
	im := image{}
	im.File("usr/share/deep/file", 0o644, []byte("x"))
	im.Symlink("bin/sh", "/bin/busybox")
	im.Dir("tmp", 0o1777)
	im.File("lib-extra", 0o644, nil) // sorts between "lib" and "lib/..."
	im.File("lib/x/y.so", 0o755, []byte("so"))
	im.File("bin/sh", 0o755, []byte("replaced")) // later additions win
	var buf bytes.Buffer
	if err := im.writeCPIO(&buf); err != nil {
		t.Fatal(err)
	}
	entries := readNewc(t, buf.Bytes())
	seen := map[string]bool{}
	var names []string
	for _, e := range entries {
		if dir := filepath.Dir(e.name); dir != "." && !seen[dir] {
			t.Errorf("%s comes before its directory %s", e.name, dir)
		}
		seen[e.name] = true
		names = append(names, e.name)
		if e.name == "bin/sh" && (e.mode != 0o100755 || string(e.data) != "replaced") {
			t.Errorf("bin/sh = %o %q, want the regular file added last", e.mode, e.data)
		}
	}
	for _, want := range []string{"usr", "usr/share", "usr/share/deep", "lib", "lib/x"} {
		if !slices.Contains(names, want) {
			t.Errorf("parent directory %s was not added; have %v", want, names)
		}
	}
}

// TestReadNewcAgainstGolden keeps the reader honest: a tiny archive laid out
// by hand, byte for byte, as the newc format defines it.
func TestReadNewcAgainstGolden(t *testing.T) {
	var b strings.Builder
	entry := func(ino, mode, nlink, size, namesize int, name, data string) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, namesize, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.WriteString(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry(1, 0o100644, 1, 2, 3, "hi", "yo")
	entry(0, 0, 1, 0, 11, "TRAILER!!!", "")
	want := b.String()

	var buf bytes.Buffer
	w := newCPIOWriter(bufio.NewWriter(&buf))
	if err := w.File("hi", 0o644, 2, strings.NewReader("yo")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w.w.(*bufio.Writer).Flush()
	if buf.String() != want {
		t.Errorf("archive bytes differ from the hand-made newc archive:\n got %q\nwant %q", buf.String(), want)
	}
	if e := readNewc(t, []byte(want)); len(e) != 1 || e[0].name != "hi" || string(e[0].data) != "yo" {
		t.Errorf("readNewc(golden) = %+v", e)
	}
}
