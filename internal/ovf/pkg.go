package ovf

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"path"
	"sort"
	"strings"
)

// PackageFile is one file of a package, as read.
type PackageFile struct {
	Name   string
	Offset int64 // in the OVA; 0 for a file of a folder
	Size   int64
	// Digests by algorithm (SHA1, SHA256, SHA512), hex.
	Digests map[string]string
}

// Package is an OVA or an OVF folder as read: the descriptor, manifest and
// certificate kept, every other file measured and hashed.
type Package struct {
	DescriptorName string
	Descriptor     []byte
	ManifestName   string
	Manifest       []byte
	CertName       string
	Cert           []byte
	Files          map[string]*PackageFile
	// Order is the order the files came in.
	Order []string
}

const maxSmallFile = MaxDescriptorBytes

func isSmall(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	return ext == ".ovf" || ext == ".mf" || ext == ".cert"
}

// NewPackage starts an empty package to add files to.
func NewPackage() *Package { return &Package{Files: map[string]*PackageFile{}} }

// Add reads one file of the package: the descriptor, manifest and
// certificate are kept (bounded), other files are hashed with the
// algorithm the manifest asks for (SHA1 and SHA256 both when the manifest
// has not been seen yet).
func (p *Package) Add(name string, offset, size int64, r io.Reader) error {
	f := &PackageFile{Name: name, Offset: offset, Size: size, Digests: map[string]string{}}
	if isSmall(name) {
		if size > maxSmallFile {
			return invalidf("%s is %d bytes long; the limit is %d", name, size, maxSmallFile)
		}
		data, err := io.ReadAll(io.LimitReader(r, size))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if int64(len(data)) != size {
			return invalidf("%s is truncated: %d of %d bytes", name, len(data), size)
		}
		switch strings.ToLower(path.Ext(name)) {
		case ".ovf":
			if p.DescriptorName != "" {
				if strings.Contains(name, "/") {
					break // an OVF in a subfolder is just a file
				}
				return invalidf("the package holds two descriptors, %s and %s", p.DescriptorName, name)
			}
			if strings.Contains(name, "/") {
				break
			}
			p.DescriptorName, p.Descriptor = name, data
		case ".mf":
			if !strings.Contains(name, "/") && p.ManifestName == "" {
				p.ManifestName, p.Manifest = name, data
			}
		case ".cert":
			if !strings.Contains(name, "/") && p.CertName == "" {
				p.CertName, p.Cert = name, data
			}
		}
		for _, algo := range []string{"SHA1", "SHA256", "SHA512"} {
			h := NewHash(algo)
			h.Write(data)
			f.Digests[algo] = hex.EncodeToString(h.Sum(nil))
		}
	} else {
		algos := []string{"SHA1", "SHA256"}
		if m, err := ParseManifest(p.Manifest); err == nil && p.Manifest != nil {
			if d, ok := m[name]; ok {
				algos = []string{d.Algo}
			}
		}
		hs := map[string]hash.Hash{}
		var ws []io.Writer
		for _, a := range algos {
			hs[a] = NewHash(a)
			ws = append(ws, hs[a])
		}
		n, err := io.CopyBuffer(io.MultiWriter(ws...), io.LimitReader(r, size), make([]byte, 1<<20))
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if n != size {
			return invalidf("%s is truncated: %d of %d bytes", name, n, size)
		}
		for a, h := range hs {
			f.Digests[a] = hex.EncodeToString(h.Sum(nil))
		}
	}
	p.Files[name] = f
	p.Order = append(p.Order, name)
	return nil
}

// ReadOVA reads a whole OVA from r.
func ReadOVA(r io.Reader) (*Package, error) {
	p := NewPackage()
	err := ScanOVA(r, func(e TarEntry, data io.Reader) error {
		return p.Add(e.Name, e.Offset, e.Size, data)
	})
	if err != nil {
		return nil, err
	}
	if p.DescriptorName == "" {
		return nil, invalidf("the OVA holds no .ovf descriptor (it holds %s)", strings.Join(firstN(p.Order, 10), ", "))
	}
	return p, nil
}

// ChunkName is the name of chunk i of a file stored in chunks.
func ChunkName(href string, i int) string { return fmt.Sprintf("%s.%09d", href, i) }

// Chunks lists the package files that hold a file: itself, or its chunks.
func (p *Package) Chunks(f File) ([]*PackageFile, error) {
	name := path.Clean(f.Href)
	if f.ChunkSize == 0 {
		pf := p.Files[name]
		if pf == nil {
			return nil, invalidf("file %s (%s) is referenced by the descriptor but not in the package", f.Href, f.ID)
		}
		return []*PackageFile{pf}, nil
	}
	var out []*PackageFile
	for i := 0; ; i++ {
		pf := p.Files[ChunkName(name, i)]
		if pf == nil {
			break
		}
		out = append(out, pf)
	}
	if len(out) == 0 {
		return nil, invalidf("file %s is stored in chunks of %d bytes, and the package has none of them (%s)", f.Href, f.ChunkSize, ChunkName(name, 0))
	}
	for i, c := range out[:len(out)-1] {
		if c.Size != f.ChunkSize {
			return nil, invalidf("chunk %d of %s is %d bytes; the descriptor says chunks are %d", i, f.Href, c.Size, f.ChunkSize)
		}
	}
	return out, nil
}

// Check verifies the package against its descriptor: every file the plan
// uses is there with the size the descriptor gives, the manifest (unless
// skipped) lists every file with its digest, and the certificate, if any,
// signs the manifest. It returns warnings for what it could not check.
func (p *Package) Check(env *Envelope, plan *Plan, skipManifest bool) ([]string, error) {
	var warnings []string
	used := map[string]bool{}
	for _, vm := range plan.VMs {
		for _, d := range vm.Disks {
			if d.File == nil {
				continue
			}
			if err := CheckHref(d.File.Href); err != nil {
				return nil, err
			}
			chunks, err := p.Chunks(*d.File)
			if err != nil {
				return nil, err
			}
			var total int64
			for _, c := range chunks {
				total += c.Size
				used[c.Name] = true
			}
			if d.File.HasSize && d.File.Size != total && d.File.Size != 0 {
				return nil, invalidf("file %s is %d bytes in the package; the descriptor says %d", d.File.Href, total, d.File.Size)
			}
		}
	}
	if skipManifest {
		return append(warnings, "the manifest and certificate were NOT checked (--skip-manifest): the files may have been changed or damaged"), nil
	}
	if p.Manifest == nil {
		if p.Cert != nil {
			return nil, invalidf("the package has a certificate (%s) but no manifest for it to sign", p.CertName)
		}
		return append(warnings, "the package has no manifest: its files' integrity cannot be checked"), nil
	}
	m, err := ParseManifest(p.Manifest)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(p.Files))
	for n := range p.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if n == p.ManifestName || n == p.CertName {
			continue
		}
		if _, listed := m[n]; !listed {
			if n == p.DescriptorName || used[n] {
				return nil, invalidf("file %s is not in the manifest %s", n, p.ManifestName)
			}
			warnings = append(warnings, fmt.Sprintf("file %s is in the package but not in its manifest; it is not used", n))
			continue
		}
		if err := m.Check(n, p.Files[n].Digests); err != nil {
			return nil, err
		}
	}
	for _, n := range m.SortedNames() {
		if p.Files[n] == nil {
			return nil, invalidf("the manifest lists %s, which is not in the package", n)
		}
	}
	if p.Cert != nil {
		s, err := VerifyCertificate(p.Cert, p.Manifest, p.ManifestName)
		if err != nil {
			return nil, err
		}
		trust := "issued by " + s.Issuer
		if s.SelfSigned {
			trust = "self-signed"
		}
		warnings = append(warnings, fmt.Sprintf("the manifest is signed by %s (%s); vdc checked the signature, not whether to trust the signer", s.Subject, trust))
	}
	return warnings, nil
}

// Bytes is a helper for tests and small packages.
func (p *Package) AddBytes(name string, data []byte) error {
	return p.Add(name, 0, int64(len(data)), bytes.NewReader(data))
}
