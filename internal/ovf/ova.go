package ovf

import (
	"archive/tar"
	"bufio"
	"errors"
	"io"
	"path"
	"strings"
)

// Limits on an OVA's tar container.
const (
	maxTarEntries = 4096
	maxNameLen    = 1024
)

// TarEntry is one file of an OVA.
type TarEntry struct {
	Name string
	// Offset is where the file's data starts in the OVA: an OVA holds
	// plain tar (no compression), so a disk can be read in place.
	Offset int64
	Size   int64
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ScanOVA reads an OVA (a tar file) from r and calls visit for each file
// with a reader of its data, which visit may leave unread. It refuses what
// could escape the folder an OVA is unpacked in or is no plain file:
// absolute names, "..", links, devices, sparse entries and duplicates.
// Nothing here writes anything: callers decide where data goes.
func ScanOVA(r io.Reader, visit func(e TarEntry, data io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		return invalidf("the OVA is gzip-compressed (a .tar.gz); OVAs are plain tar: gunzip it, then import the tar")
	}
	cr := &countingReader{r: br}
	tr := tar.NewReader(cr)
	seen := map[string]bool{}
	for count := 0; ; count++ {
		h, err := tr.Next()
		if err == io.EOF {
			if count == 0 {
				return invalidf("the OVA is an empty tar archive")
			}
			return nil
		}
		if err != nil {
			if count == 0 {
				return invalidf("not an OVA: the file is not a tar archive (%v)", err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return invalidf("the OVA is truncated: it ends inside entry %d", count+1)
			}
			return invalidf("the OVA's tar archive is damaged after %d entries: %v", count, err)
		}
		if count >= maxTarEntries {
			return invalidf("the OVA holds more than %d files", maxTarEntries)
		}
		name, err := entryName(h)
		if err != nil {
			return err
		}
		if name == "" {
			continue // a directory
		}
		if seen[name] {
			return invalidf("the OVA holds %q twice", name)
		}
		seen[name] = true
		e := TarEntry{Name: name, Offset: cr.n, Size: h.Size}
		if err := visit(e, tr); err != nil {
			return err
		}
	}
}

// entryName checks a tar header and returns the file's clean name ("" for
// a directory, which is skipped).
func entryName(h *tar.Header) (string, error) {
	n := h.Name
	if len(n) > maxNameLen {
		return "", invalidf("the OVA has a file name of %d bytes", len(n))
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
	case tar.TypeDir:
		if err := CheckHref(strings.TrimSuffix(n, "/")); err != nil && n != "./" {
			return "", invalidf("the OVA has a folder %q outside the package", n)
		}
		return "", nil
	case tar.TypeSymlink, tar.TypeLink:
		return "", invalidf("the OVA holds a link %q -> %q; links are refused (they can point outside the package)", n, h.Linkname)
	case tar.TypeGNUSparse:
		return "", invalidf("the OVA holds a sparse tar entry %q; OVAs are plain tar", n)
	default:
		return "", invalidf("the OVA holds %q, which is not a regular file (tar type %q)", n, string(h.Typeflag))
	}
	if h.Size < 0 {
		return "", invalidf("the OVA's entry %q has a negative size", n)
	}
	if strings.HasPrefix(n, "/") || strings.Contains(n, "\\") || strings.ContainsRune(n, 0) {
		return "", invalidf("the OVA holds %q, an absolute or non-portable path", n)
	}
	clean := path.Clean(n)
	if clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
		return "", invalidf("the OVA holds %q, which points outside the package", n)
	}
	return clean, nil
}

// WriteOVA writes files into an OVA in the order given (descriptor first,
// then the manifest, then the disks, as DSP0243 asks).
type OVAWriter struct {
	tw *tar.Writer
}

func NewOVAWriter(w io.Writer) *OVAWriter { return &OVAWriter{tw: tar.NewWriter(w)} }

// Add writes one file of size bytes from r.
func (o *OVAWriter) Add(name string, size int64, r io.Reader) error {
	// USTAR format with a fixed mode and owner: what ovftool writes, and
	// what VirtualBox's reader expects.
	h := &tar.Header{Name: name, Size: size, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR,
		Uname: "someone", Gname: "someone"}
	if err := o.tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(o.tw, r)
	if err == nil && n != size {
		err = io.ErrShortWrite
	}
	return err
}

func (o *OVAWriter) Close() error { return o.tw.Close() }
