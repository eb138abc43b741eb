package staging

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/ovf"
)

// ConvertDisk is one disk to make from a staged package.
type ConvertDisk struct {
	// Files are the package files holding the disk's data, in order (one,
	// or its chunks).
	Files []string `json:"files"`
	Gzip  bool     `json:"gzip,omitempty"`
	// CapacityBytes is what the descriptor declares (0: the image's size).
	CapacityBytes int64 `json:"capacityBytes"`
	// Datastore and Path (relative to it) say where the qcow2 goes.
	Datastore string `json:"datastore"`
	Path      string `json:"path"`
}

// ConvertRequest turns staged disks into VM disks.
type ConvertRequest struct {
	Disks []ConvertDisk `json:"disks"`
}

// ConvertedDisk is what was made.
type ConvertedDisk struct {
	Path         string `json:"path"`
	SourceFormat string `json:"sourceFormat"`
	VirtualBytes int64  `json:"virtualBytes"`
}

// POST /agent/v1/staging/{id}/convert?datastore=D: make each disk, in
// qcow2, from the staged data. A failure removes every disk it made.
func (a *Area) stagingConvert(w http.ResponseWriter, r *http.Request) {
	var req ConvertRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	dir, err := a.stagingPath(r)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	dsts := make([]string, len(req.Disks))
	for i, d := range req.Disks {
		if dsts[i], err = a.Resolve(d.Datastore, d.Path); err != nil {
			agenthttp.Fail(w, err)
			return
		}
		if _, err := os.Stat(dsts[i]); err == nil {
			agenthttp.Fail(w, api.Errorf(api.ErrConflict, "disk file %s already exists", d.Path))
			return
		}
	}
	streamJob(w, func(progress func(float64, string)) (any, error) {
		defer lockStaging(dir)()
		sp, err := readIndex(dir)
		if err != nil {
			return nil, err
		}
		var out []ConvertedDisk
		ok := false
		defer func() {
			if !ok {
				for _, p := range dsts {
					_ = os.Remove(p)
					_ = os.Remove(filepath.Dir(p)) // the VM's folder, if now empty
				}
			}
			_ = os.RemoveAll(filepath.Join(dir, "work"))
		}()
		for i, d := range req.Disks {
			if a.BeforeConvert != nil {
				if err := a.BeforeConvert(r.Context()); err != nil {
					return nil, fmt.Errorf("disk %d (%s): %w", i+1, strings.Join(d.Files, ", "), err)
				}
			}
			step := func(p float64, msg string) {
				progress((float64(i)+p)/float64(len(req.Disks)), fmt.Sprintf("disk %d of %d: %s", i+1, len(req.Disks), msg))
			}
			res, err := convertOne(r.Context(), dir, sp, d, dsts[i], step)
			if err != nil {
				return nil, fmt.Errorf("disk %d (%s): %w", i+1, strings.Join(d.Files, ", "), err)
			}
			out = append(out, res)
		}
		ok = true
		return out, nil
	})
}

// source finds a staged file's data: a byte range of the OVA, or a file.
func source(dir string, sp *Package, name string) (disk.Source, error) {
	f := sp.Package.Files[name]
	if f == nil {
		return disk.Source{}, api.Errorf(api.ErrInvalid, "%s is not in the package", name)
	}
	if sp.OVA != "" {
		return disk.Source{Path: filepath.Join(filesDir(dir), sp.OVA), Offset: f.Offset, Size: f.Size}, nil
	}
	return disk.Source{Path: filepath.Join(filesDir(dir), filepath.FromSlash(name))}, nil
}

// sectionFile is a byte range of a file as an io.ReaderAt.
type sectionFile struct {
	*io.SectionReader
	f *os.File
}

func openSource(s disk.Source) (*sectionFile, int64, error) {
	f, err := os.Open(s.Path)
	if err != nil {
		return nil, 0, err
	}
	size := s.Size
	if s.Offset == 0 && s.Size == 0 {
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, 0, err
		}
		size = fi.Size()
	}
	return &sectionFile{io.NewSectionReader(f, s.Offset, size), f}, size, nil
}

// maxUnpacked bounds what a compressed or chunked disk may unpack to: no
// image of a disk holds much more than the disk (a sparse VMDK's tables
// are a fraction of a percent). This is what stops a gzip bomb.
func maxUnpacked(capacity int64) int64 {
	if capacity <= 0 {
		capacity = int64(api.MaxDiskSize)
	}
	return capacity + capacity/32 + 64<<20
}

func convertOne(ctx context.Context, dir string, sp *Package, d ConvertDisk, dst string, progress func(float64, string)) (ConvertedDisk, error) {
	res := ConvertedDisk{Path: d.Path}
	if len(d.Files) == 0 {
		return res, api.Errorf(api.ErrInvalid, "no file holds the disk's data")
	}
	src, err := source(dir, sp, d.Files[0])
	if err != nil {
		return res, err
	}
	if d.Gzip || len(d.Files) > 1 {
		// Unpack to the staging folder first: qemu-img needs random
		// access. Bounded by the declared capacity and the free space.
		work := filepath.Join(dir, "work")
		if err := os.MkdirAll(work, 0o755); err != nil {
			return res, err
		}
		out := filepath.Join(work, fmt.Sprintf("disk-%d", len(d.Path)))
		out, err = unpack(ctx, dir, sp, d, out, progress)
		if err != nil {
			return res, err
		}
		src = disk.Source{Path: out}
	}
	sf, size, err := openSource(src)
	if err != nil {
		return res, err
	}
	det, err := disk.Detect(sf, size)
	sf.f.Close()
	if err != nil {
		return res, err
	}
	if len(det.Extents) > 0 {
		if src.Offset != 0 || sp.OVA != "" {
			return res, api.Errorf(api.ErrInvalid, "a VMDK descriptor (%s) inside an OVA cannot reach its extents; OVAs carry whole disks (streamOptimized)", det.Variant)
		}
		for _, e := range det.Extents {
			fi, err := os.Lstat(filepath.Join(filepath.Dir(src.Path), e))
			if err != nil || !fi.Mode().IsRegular() {
				return res, api.Errorf(api.ErrInvalid, "extent %s of the VMDK descriptor is not uploaded beside it", e)
			}
		}
	}
	src.Format = det.Format
	res.SourceFormat = det.String()
	info, err := disk.InspectSource(ctx, src)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), "inspect disk "+src.Path+": ", "")
		return res, api.Errorf(api.ErrInvalid, "the %s image cannot be read (damaged or truncated?): %s", det, strings.ReplaceAll(msg, src.Path, d.Files[0]))
	}
	if info.VirtualSize <= 0 || info.VirtualSize > int64(api.MaxDiskSize) {
		return res, api.Errorf(api.ErrInvalid, "the image says it holds %s; vdc disks are 1 byte to %s", api.Size(info.VirtualSize), api.MaxDiskSize)
	}
	// VHDs round their size up to a CHS geometry: allow them a little.
	slack := int64(0)
	if det.Format == disk.FormatVPC {
		slack = 8 << 20
	}
	if d.CapacityBytes > 0 && info.VirtualSize > d.CapacityBytes+slack {
		return res, api.Errorf(api.ErrInvalid, "the %s image holds %s, more than the %s the descriptor declares", det, api.Size(info.VirtualSize), api.Size(d.CapacityBytes))
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return res, err
	}
	if err := checkFree(filepath.Dir(dst), min(info.ActualSize, info.VirtualSize)); err != nil {
		return res, err
	}
	progress(0, "converting "+det.String()+" to qcow2")
	if err := disk.ConvertFrom(ctx, src, dst, func(p float64) { progress(p, "converting "+det.String()+" to qcow2") }); err != nil {
		return res, err
	}
	res.VirtualBytes = info.VirtualSize
	if d.CapacityBytes > info.VirtualSize {
		if err := disk.Resize(ctx, dst, d.CapacityBytes); err != nil {
			return res, err
		}
		res.VirtualBytes = d.CapacityBytes
	}
	return res, nil
}

var errTooBig = errors.New("too big")

type limitWriter struct {
	w     io.Writer
	n     int64
	limit int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.n+int64(len(p)) > l.limit {
		return 0, errTooBig
	}
	n, err := l.w.Write(p)
	l.n += int64(n)
	return n, err
}

// unpack writes a gzip-compressed and/or chunked file whole into out.
func unpack(ctx context.Context, dir string, sp *Package, d ConvertDisk, out string, progress func(float64, string)) (string, error) {
	var readers []io.Reader
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, name := range d.Files {
		s, err := source(dir, sp, name)
		if err != nil {
			return "", err
		}
		sf, _, err := openSource(s)
		if err != nil {
			return "", err
		}
		closers = append(closers, sf.f)
		readers = append(readers, sf.SectionReader)
	}
	var r io.Reader = io.MultiReader(readers...)
	if d.Gzip {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return "", api.Errorf(api.ErrInvalid, "the disk is said to be gzip-compressed, and is not: %v", err)
		}
		r = zr
	}
	f, err := os.Create(out)
	if err != nil {
		return "", err
	}
	defer f.Close()
	limit := maxUnpacked(d.CapacityBytes)
	if free, err := freeBytes(dir); err == nil && free-(256<<20) < limit {
		limit = free - (256 << 20)
	}
	lw := &limitWriter{w: f, limit: limit}
	progress(0, "unpacking")
	_, err = io.CopyBuffer(lw, &ctxReader{ctx, r}, make([]byte, 1<<20))
	if errors.Is(err, errTooBig) {
		return "", api.Errorf(api.ErrInvalid, "the compressed disk unpacks to more than %s (a disk of %s cannot need that much; a decompression bomb?); stopped", api.Size(limit), api.Size(d.CapacityBytes))
	}
	if err != nil {
		if errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) {
			return "", api.Errorf(api.ErrInvalid, "the compressed disk is damaged: %v", err)
		}
		return "", err
	}
	return out, f.Sync()
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// ExportDisk is one VM disk to write into an export's folder.
type ExportDisk struct {
	Datastore string `json:"datastore"`
	Path      string `json:"path"` // relative to the datastore
	Name      string `json:"name"` // file name in the package
}

// ExportRequest converts a VM's disks for an OVF package.
type ExportRequest struct {
	Disks []ExportDisk `json:"disks"`
	// Extra files (descriptor, manifest) to write as they are.
	Files map[string][]byte `json:"files,omitempty"`
}

// ExportedFile is a file of an export folder.
type ExportedFile struct {
	Name         string `json:"name"`
	Size         int64  `json:"size"`
	SHA256       string `json:"sha256"`
	VirtualBytes int64  `json:"virtualBytes,omitempty"`
	// PopulatedBytes is the data the disk holds (qemu-img's allocation).
	PopulatedBytes int64 `json:"populatedBytes,omitempty"`
}

// POST /agent/v1/staging/{id}/export?datastore=D: write each disk as a
// streamOptimized VMDK into the folder and hash it; or, with Files only,
// write those files (the descriptor and manifest, once the disks are known).
func (a *Area) stagingExport(w http.ResponseWriter, r *http.Request) {
	var req ExportRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	dir, err := a.stagingPath(r)
	if err == nil {
		err = os.MkdirAll(filesDir(dir), 0o755)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	srcs := make([]string, len(req.Disks))
	for i, d := range req.Disks {
		if ovf.CheckHref(d.Name) != nil || strings.Contains(d.Name, "/") {
			agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "bad file name %q", d.Name))
			return
		}
		if srcs[i], err = a.Resolve(d.Datastore, d.Path); err != nil {
			agenthttp.Fail(w, err)
			return
		}
	}
	for name, data := range req.Files {
		if ovf.CheckHref(name) != nil || strings.Contains(name, "/") {
			agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "bad file name %q", name))
			return
		}
		if err := os.WriteFile(filepath.Join(filesDir(dir), name), data, 0o644); err != nil {
			agenthttp.Fail(w, err)
			return
		}
	}
	streamJob(w, func(progress func(float64, string)) (any, error) {
		var out []ExportedFile
		for i, d := range req.Disks {
			dst := filepath.Join(filesDir(dir), d.Name)
			info, err := disk.Inspect(r.Context(), srcs[i])
			if err != nil {
				return nil, err
			}
			if err := checkFree(dir, info.ActualSize); err != nil {
				return nil, err
			}
			step := func(p float64) {
				progress((float64(i)+p*0.9)/float64(len(req.Disks)), fmt.Sprintf("disk %d of %d: writing %s", i+1, len(req.Disks), d.Name))
			}
			if err := disk.ExportStreamVMDK(r.Context(), srcs[i], dst, step); err != nil {
				return nil, err
			}
			f, err := os.Open(dst)
			if err != nil {
				return nil, err
			}
			h := sha256.New()
			n, err := io.CopyBuffer(h, f, make([]byte, 1<<20))
			f.Close()
			if err != nil {
				return nil, err
			}
			out = append(out, ExportedFile{Name: d.Name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil)),
				VirtualBytes: info.VirtualSize, PopulatedBytes: info.ActualSize})
		}
		return out, nil
	})
}
