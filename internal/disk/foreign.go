package disk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Foreign disk formats as qemu-img names its drivers.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatVMDK  = "vmdk"
	FormatVPC   = "vpc" // VHD
	FormatVHDX  = "vhdx"
	FormatVDI   = "vdi"
)

// ErrBadImage marks a disk image vdc refuses to read; the message says why.
var ErrBadImage = errors.New("bad disk image")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadImage, fmt.Sprintf(format, args...))
}

// Detected is what a disk file holds, read from its content (never its
// name): the qemu-img driver to read it with, the variant, and for a VMDK
// descriptor the extent files it needs beside it.
type Detected struct {
	Format  string   `json:"format"`
	Variant string   `json:"variant,omitempty"` // streamOptimized, monolithicSparse, fixed, dynamic...
	Extents []string `json:"extents,omitempty"`
}

func (d Detected) String() string {
	if d.Variant != "" {
		return d.Format + " (" + d.Variant + ")"
	}
	return d.Format
}

// Detect reads a disk image's format from its first and last bytes. It
// refuses what would make qemu-img open other files than the ones given:
// qcow2 and VHD images with a backing file or parent, qcow2 with an
// external data file, VMDKs whose extents lie outside their folder or
// whose sparse header points at an embedded descriptor in place of data.
// The result is passed to qemu-img explicitly, so qemu-img never guesses.
func Detect(r io.ReaderAt, size int64) (Detected, error) {
	head := make([]byte, 4096)
	n, err := r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return Detected{}, fmt.Errorf("read the image: %w", err)
	}
	head = head[:n]
	var tail []byte
	if size >= 512 {
		tail = make([]byte, 512)
		if _, err := r.ReadAt(tail, size-512); err != nil && err != io.EOF {
			return Detected{}, fmt.Errorf("read the image's end: %w", err)
		}
	}
	switch {
	case bytes.HasPrefix(head, []byte("QFI\xfb")):
		return detectQcow2(head)
	case bytes.HasPrefix(head, []byte("KDMV")):
		return detectSparseVMDK(r, head, size)
	case bytes.HasPrefix(head, []byte("COWD")):
		return Detected{Format: FormatVMDK, Variant: "vmfsSparse"}, nil
	case bytes.HasPrefix(head, []byte("# Disk DescriptorFile")) || bytes.Contains(head[:min(len(head), 1024)], []byte("createType=")):
		return detectVMDKDescriptor(r, size)
	case bytes.HasPrefix(head, []byte("vhdxfile")):
		return Detected{Format: FormatVHDX}, nil
	case bytes.HasPrefix(head, []byte("conectix")):
		return detectVHD(head[:min(len(head), 512)], "dynamic")
	case len(head) >= 0x44 && binary.LittleEndian.Uint32(head[0x40:]) == 0xbeda107f:
		return Detected{Format: FormatVDI}, nil
	case bytes.HasPrefix(head, []byte("QED\x00")):
		return Detected{}, badf("QED images are not supported; convert it to qcow2 first")
	case tail != nil && bytes.HasPrefix(tail, []byte("conectix")):
		return detectVHD(tail, "fixed")
	}
	return Detected{Format: FormatRaw}, nil
}

func detectQcow2(h []byte) (Detected, error) {
	if len(h) < 104 {
		return Detected{}, badf("qcow2 header is truncated")
	}
	if binary.BigEndian.Uint64(h[8:]) != 0 {
		return Detected{}, badf("the qcow2 image has a backing file; import a standalone image (qemu-img convert it first)")
	}
	if v := binary.BigEndian.Uint32(h[4:]); v >= 3 && binary.BigEndian.Uint64(h[72:])&(1<<2) != 0 {
		return Detected{}, badf("the qcow2 image keeps its data in an external file; import a standalone image")
	}
	return Detected{Format: FormatQcow2}, nil
}

func detectVHD(footer []byte, variant string) (Detected, error) {
	if len(footer) < 64 {
		return Detected{}, badf("VHD footer is truncated")
	}
	switch binary.BigEndian.Uint32(footer[60:]) {
	case 2:
		variant = "fixed"
	case 3:
		variant = "dynamic"
	case 4:
		return Detected{}, badf("the VHD is a differencing disk (it needs its parent); import the merged disk")
	}
	return Detected{Format: FormatVPC, Variant: variant}, nil
}

// VMDK sparse header (VMware Virtual Disk Format 1.1, section "Hosted
// Sparse Extent Header").
func detectSparseVMDK(r io.ReaderAt, h []byte, size int64) (Detected, error) {
	if len(h) < 512 {
		return Detected{}, badf("VMDK header is truncated")
	}
	capacity := binary.LittleEndian.Uint64(h[12:])
	descOff := int64(binary.LittleEndian.Uint64(h[28:]))
	descSize := int64(binary.LittleEndian.Uint64(h[36:]))
	if capacity == 0 {
		// qemu-img would then read the embedded descriptor as the disk's
		// description, extents and all: files chosen by the image.
		return Detected{}, badf("the sparse VMDK says its capacity is 0 (its embedded descriptor would decide which files are read); refused")
	}
	variant := "monolithicSparse"
	if descOff > 0 && descSize > 0 && descSize < 2048 && descOff*512 < size {
		desc := make([]byte, descSize*512)
		if n, _ := r.ReadAt(desc, descOff*512); n > 0 {
			if m := createTypeRE.FindSubmatch(desc[:n]); m != nil {
				variant = string(m[1])
			}
		}
	}
	if variant == "twoGbMaxExtentSparse" {
		return Detected{}, badf("this is one extent of a split (twoGbMaxExtentSparse) VMDK; import its descriptor file with the extents beside it")
	}
	return Detected{Format: FormatVMDK, Variant: variant}, nil
}

var (
	createTypeRE = regexp.MustCompile(`createType\s*=\s*"([^"]*)"`)
	extentRE     = regexp.MustCompile(`^(RW|RDONLY|NOACCESS)\s+(\d+)\s+(\w+)\s*(?:"([^"]*)"\s*(\d+)?)?`)
)

// detectVMDKDescriptor reads a text VMDK descriptor (monolithicFlat,
// twoGbMaxExtent*, vmfs) and checks its extents are plain file names:
// they are opened relative to the descriptor, and must not point
// anywhere else.
func detectVMDKDescriptor(r io.ReaderAt, size int64) (Detected, error) {
	if size > 1<<20 {
		return Detected{}, badf("a VMDK descriptor of %d bytes is not one", size)
	}
	buf := make([]byte, size)
	n, _ := r.ReadAt(buf, 0)
	d := Detected{Format: FormatVMDK}
	if m := createTypeRE.FindSubmatch(buf[:n]); m != nil {
		d.Variant = string(m[1])
	}
	if strings.Contains(d.Variant, "vmfsRaw") || strings.Contains(d.Variant, "RDM") || strings.Contains(d.Variant, "PassthroughRawDevice") {
		return d, badf("the VMDK maps a raw device (%s); refused", d.Variant)
	}
	sc := bufio.NewScanner(bytes.NewReader(buf[:n]))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		m := extentRE.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(line, "parentFileNameHint") {
				return d, badf("the VMDK is a delta disk of %s; import the whole disk", strings.TrimPrefix(line, "parentFileNameHint="))
			}
			continue
		}
		switch m[3] {
		case "SPARSE", "FLAT", "VMFS", "VMFSSPARSE":
		case "ZERO":
			continue
		default:
			return d, badf("the VMDK has an extent of type %s, which is not a file; refused", m[3])
		}
		name := m[4]
		if name == "" || strings.ContainsAny(name, "/\\") || name == "." || name == ".." || strings.ContainsRune(name, 0) {
			return d, badf("the VMDK's extent %q is not a plain file name beside the descriptor; refused", name)
		}
		d.Extents = append(d.Extents, name)
	}
	if len(d.Extents) == 0 {
		return d, badf("the VMDK descriptor lists no extent")
	}
	return d, nil
}

// Source is where a foreign disk's data is: a file, or a byte range of a
// file (a disk inside an OVA, read in place).
type Source struct {
	Path   string `json:"path"`
	Offset int64  `json:"offset,omitempty"`
	Size   int64  `json:"size,omitempty"` // with Offset: the range's length
	Format string `json:"format"`
}

// spec is the qemu-img filename of a source: a plain path with -f, or a
// json: description that reads a byte range through the raw driver.
func (s Source) spec() (args []string, err error) {
	if s.Offset == 0 && s.Size == 0 {
		return []string{"-f", s.Format, s.Path}, nil
	}
	inner := map[string]any{"driver": "raw", "offset": s.Offset, "size": s.Size,
		"file": map[string]any{"driver": "file", "filename": s.Path}}
	spec := map[string]any{"driver": s.Format, "file": inner}
	if s.Format == FormatRaw {
		spec = inner
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return []string{"json:" + string(b)}, nil
}

// InspectSource is Inspect for a Source (format given, not probed).
func InspectSource(ctx context.Context, s Source) (Info, error) {
	var info Info
	sp, err := s.spec()
	if err != nil {
		return info, err
	}
	out, err := run(ctx, "inspect disk "+s.Path, append([]string{"info", "--force-share", "--output=json"}, sp...)...)
	if err != nil {
		return info, err
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return info, fmt.Errorf("inspect disk %s: %w", s.Path, err)
	}
	return info, nil
}

// ConvertFrom copies a foreign disk into a new qcow2 file, calling
// progress with 0..1 as qemu-img reports it. A failed copy leaves no file.
func ConvertFrom(ctx context.Context, s Source, dst string, progress func(float64)) error {
	sp, err := s.spec()
	if err != nil {
		return err
	}
	args := append([]string{"convert", "-p"}, sp...)
	args = append(args, "-O", FormatQcow2, dst)
	err = runProgress(ctx, "convert "+s.Path+" ("+s.Format+") to "+dst, progress, args...)
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}

// ExportStreamVMDK writes a disk as a streamOptimized VMDK, the form OVF
// packages carry (compressed, readable front to back).
func ExportStreamVMDK(ctx context.Context, src, dst string, progress func(float64)) error {
	err := runProgress(ctx, "convert "+src+" to a streamOptimized VMDK", progress,
		"convert", "-p", "-U", "-O", FormatVMDK, "-o", "subformat=streamOptimized", src, dst)
	if err != nil {
		_ = os.Remove(dst)
	}
	return err
}

var pctRE = regexp.MustCompile(`\(([\d.]+)/100%\)`)

// runProgress runs qemu-img -p and turns its "(12.34/100%)" lines into
// progress calls.
func runProgress(ctx context.Context, what string, progress func(float64), args ...string) error {
	if !Available() {
		return ErrNoQemuImg
	}
	cmd := exec.CommandContext(ctx, QemuImg, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	sc := bufio.NewScanner(out)
	sc.Split(splitCR)
	for sc.Scan() {
		if m := pctRE.FindStringSubmatch(sc.Text()); m != nil && progress != nil {
			if f, err := strconv.ParseFloat(m[1], 64); err == nil {
				progress(f / 100)
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		msg := strings.TrimPrefix(strings.TrimSpace(errb.String()), "qemu-img: ")
		if ctx.Err() != nil {
			msg = ctx.Err().Error()
		}
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("%s: %s", what, msg)
	}
	return nil
}

func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

// DetectFile detects a file's format, and for a VMDK descriptor checks
// its extents exist beside it.
func DetectFile(path string) (Detected, error) {
	f, err := os.Open(path)
	if err != nil {
		return Detected{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Detected{}, err
	}
	if !fi.Mode().IsRegular() {
		return Detected{}, badf("%s is not a regular file", path)
	}
	d, err := Detect(f, fi.Size())
	if err != nil {
		return d, err
	}
	for _, e := range d.Extents {
		if fi, err := os.Lstat(filepath.Join(filepath.Dir(path), e)); err != nil || !fi.Mode().IsRegular() {
			return d, badf("extent %s of VMDK %s is not a file beside it", e, filepath.Base(path))
		}
	}
	return d, nil
}
