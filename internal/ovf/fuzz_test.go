package ovf

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func seedDescriptors(f *testing.F) {
	f.Add([]byte(minimal))
	files, _ := filepath.Glob("testdata/*.ovf")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
}

// FuzzParse: no descriptor makes the parser or the planner panic, loop or
// blow up; whatever parses also plans or fails cleanly.
func FuzzParse(f *testing.F) {
	seedDescriptors(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		env, err := Parse(data)
		if err != nil {
			return
		}
		p, err := env.Plan(Options{})
		if err != nil {
			return
		}
		for _, vm := range p.VMs {
			if vm.CPUs < 1 || vm.MemoryBytes < 1<<20 || len(vm.Disks) > maxDisks {
				t.Fatalf("accepted a VM out of bounds: %+v", vm)
			}
			for _, d := range vm.Disks {
				if d.CapacityBytes < 0 || d.CapacityBytes > maxDisk {
					t.Fatalf("accepted a disk of %d bytes", d.CapacityBytes)
				}
			}
		}
	})
}

// FuzzScanOVA: no byte string makes the OVA reader panic or hand out a
// name that leaves the package.
func FuzzScanOVA(f *testing.F) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	_ = tw.WriteHeader(&tar.Header{Name: "vm.ovf", Size: int64(len(minimal)), Typeflag: tar.TypeReg, Mode: 0o644})
	_, _ = tw.Write([]byte(minimal))
	_ = tw.WriteHeader(&tar.Header{Name: "d.vmdk", Size: 512, Typeflag: tar.TypeReg, Mode: 0o644})
	_, _ = tw.Write(make([]byte, 512))
	_ = tw.Close()
	f.Add(b.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = ScanOVA(bytes.NewReader(data), func(e TarEntry, r io.Reader) error {
			if CheckHref(e.Name) != nil || e.Offset < 0 || e.Offset > int64(len(data)) {
				t.Fatalf("handed out entry %+v", e)
			}
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if p, err := ReadOVA(bytes.NewReader(data)); err == nil {
			if env, err := Parse(p.Descriptor); err == nil {
				if plan, err := env.Plan(Options{}); err == nil {
					_, _ = p.Check(env, plan, false)
				}
			}
		}
	})
}
