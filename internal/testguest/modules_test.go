package testguest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A modules.dep shaped like Debian 6.1's for the virtio and SCSI stacks:
// each line lists all dependencies, the ones to load first last.
const fakeModulesDep = `kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/drivers/scsi/scsi_common.ko:
kernel/drivers/scsi/scsi_mod.ko: kernel/drivers/scsi/scsi_common.ko
kernel/drivers/scsi/sd_mod.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/block/t10-pi.ko.xz
kernel/block/t10-pi.ko.xz:
kernel/drivers/scsi/virtio_scsi.ko: kernel/drivers/scsi/scsi_mod.ko kernel/drivers/scsi/scsi_common.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko
kernel/net/core/failover.ko:
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko

# comments and blank lines are ignored
kernel/drivers/input/evdev.ko:
`

func TestModuleLoadOrder(t *testing.T) {
	idx, err := parseModulesDep(strings.NewReader(fakeModulesDep))
	if err != nil {
		t.Fatal(err)
	}
	if err := idx.parseModulesBuiltin(strings.NewReader("kernel/drivers/acpi/button.ko\n")); err != nil {
		t.Fatal(err)
	}

	order, missing, err := idx.loadOrder([]string{"virtio-net", "virtio_blk", "sd_mod", "virtio_scsi", "button", "ahci"}, map[string]bool{"failover": true})
	if err != nil {
		t.Fatal(err)
	}
	// button is built in, ahci does not exist in this kernel.
	if !slices.Equal(missing, []string{"ahci"}) {
		t.Errorf("missing = %v, want [ahci]", missing)
	}
	var names []string
	for _, p := range order {
		names = append(names, moduleName(p))
	}
	want := []string{
		"virtio", "virtio_ring", "net_failover", "virtio_net", // failover skipped: already loaded
		"virtio_blk",
		"t10_pi", "scsi_common", "scsi_mod", "sd_mod",
		"virtio_scsi",
	}
	if !slices.Equal(names, want) {
		t.Errorf("load order\n got %v\nwant %v", names, want)
	}
	// Whatever the order, every module must come after all it depends on.
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
	}
	for _, p := range order {
		for _, d := range idx.deps[p] {
			if dp, ok := pos[d]; ok && dp > pos[p] {
				t.Errorf("%s is loaded before its dependency %s", p, d)
			}
		}
		if slices.Index(order, p) != pos[p] {
			t.Errorf("%s is loaded twice", p)
		}
	}
}

func TestModuleLoadOrderCycle(t *testing.T) {
	idx, err := parseModulesDep(strings.NewReader("a.ko: b.ko\nb.ko: c.ko\nc.ko: a.ko\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := idx.loadOrder([]string{"a"}, nil); err == nil || !strings.Contains(err.Error(), "a.ko -> b.ko -> c.ko -> a.ko") {
		t.Errorf("cycle error = %v", err)
	}
}

func TestParseModulesDepRejectsGarbage(t *testing.T) {
	if _, err := parseModulesDep(strings.NewReader("kernel/a.ko: \nno colon here\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("error = %v, want one naming line 2", err)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/virtio/virtio_pci.ko":         "virtio_pci",
		"kernel/drivers/char/hw_random/virtio-rng.ko": "virtio_rng",
		"kernel/block/t10-pi.ko.zst":                  "t10_pi",
		"crc64-rocksoft.ko.xz":                        "crc64_rocksoft",
		"virtio-net":                                  "virtio_net",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKernelDependency(t *testing.T) {
	for _, tc := range []struct{ depends, name, version string }{
		{"linux-image-6.1.0-56-amd64 (= 6.1.192-2)", "linux-image-6.1.0-56-amd64", "6.1.192-2"},
		{"linux-image-6.12.9-amd64-unsigned (= 6.12.9-1) | linux-image-6.12.9-amd64 (= 6.12.9-1)", "linux-image-6.12.9-amd64", "6.12.9-1"},
		{"initramfs-tools, linux-image-6.1.0-9-amd64", "linux-image-6.1.0-9-amd64", ""},
	} {
		name, version, err := kernelDependency(tc.depends)
		if err != nil || name != tc.name || version != tc.version {
			t.Errorf("kernelDependency(%q) = %q, %q, %v; want %q, %q", tc.depends, name, version, err, tc.name, tc.version)
		}
	}
	if _, _, err := kernelDependency("libc6 (>= 2.36)"); err == nil {
		t.Error("no error for Depends without a kernel")
	}
}

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd)\n" +
		"\tlibglib-2.0.so.0 => /lib/x86_64-linux-gnu/libglib-2.0.so.0 (0x00007f44)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f43)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f45)\n"
	libs, err := parseLdd(out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/lib/x86_64-linux-gnu/libglib-2.0.so.0", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if !slices.Equal(libs, want) {
		t.Errorf("parseLdd = %v, want %v", libs, want)
	}
	if _, err := parseLdd("\tlibnuma.so.1 => not found\n"); err == nil || !strings.Contains(err.Error(), "libnuma.so.1") {
		t.Errorf("missing library error = %v", err)
	}
}

// TestBzImagePayload builds a minimal bzImage-shaped file around a gzip
// payload and checks that the payload and its appended size are found.
func TestBzImagePayload(t *testing.T) {
	kernel := bytes.Repeat([]byte("vmlinux "), 1000)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(kernel)
	zw.Close()
	payload := binary.LittleEndian.AppendUint32(z.Bytes(), uint32(len(kernel)))

	img := make([]byte, 3*512+64) // setup_sects = 2, then 64 bytes before the payload
	img[0x1f1] = 2
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	binary.LittleEndian.PutUint32(img[0x248:], 64)
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, payload...)

	p, size, err := bzImagePayload(img)
	if err != nil {
		t.Fatal(err)
	}
	if size != uint32(len(kernel)) {
		t.Errorf("size = %d, want %d", size, len(kernel))
	}
	got, err := decompress(context.Background(), p)
	if err != nil || !bytes.Equal(got, kernel) {
		t.Errorf("decompress = %d bytes, %v", len(got), err)
	}
	if _, _, err := bzImagePayload(make([]byte, 1024)); err == nil {
		t.Error("no error for a file without a bzImage header")
	}
}

func TestHasNote(t *testing.T) {
	note := func(name string, typ uint32, desc []byte) []byte {
		var b []byte
		b = binary.LittleEndian.AppendUint32(b, uint32(len(name)+1))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(desc)))
		b = binary.LittleEndian.AppendUint32(b, typ)
		b = append(b, name...)
		b = append(b, make([]byte, pad4(len(name)+1)-len(name))...)
		b = append(b, desc...)
		return append(b, make([]byte, pad4(len(desc))-len(desc))...)
	}
	notes := append(note("GNU", 3, []byte("build-id-bytes")), note("Xen", xenElfnotePhys32Entry, []byte{1, 2, 3, 4})...)
	if !hasNote(notes, "Xen", xenElfnotePhys32Entry) {
		t.Error("PVH note not found")
	}
	if hasNote(notes[:len(notes)-4], "Xen", xenElfnotePhys32Entry) {
		t.Error("truncated note accepted")
	}
	if hasNote(note("Xen", 6, []byte("linux")), "Xen", xenElfnotePhys32Entry) {
		t.Error("wrong note type accepted")
	}
}

// TestModinfoIndexOnCachedKernel reads real modules' .modinfo, which is
// how dependencies are found in Debian packages (they ship no
// modules.dep). It uses the kernel the end-to-end tests cache, if any.
func TestModinfoIndexOnCachedKernel(t *testing.T) {
	guest(t) // downloads the kernel into the cache, or skips
	k, err := cachedKernel(filepath.Join(os.TempDir(), "vdc-testguest-cache"))
	if err != nil {
		t.Fatalf("the test guest was built but its kernel is not in the cache: %v", err)
	}
	idx, err := indexFromModinfo(context.Background(), k.modDir)
	if err != nil {
		t.Fatal(err)
	}
	order, missing, err := idx.loadOrder([]string{"virtio_net"}, nil)
	if err != nil || len(missing) != 0 {
		t.Fatalf("loadOrder(virtio_net) = %v, missing %v, %v", order, missing, err)
	}
	var names []string
	for _, p := range order {
		names = append(names, moduleName(p))
	}
	for _, want := range []string{"failover", "net_failover", "virtio", "virtio_ring"} {
		if !slices.Contains(names, want) {
			t.Errorf("virtio_net's dependencies %v lack %s", names, want)
		}
	}
	if names[len(names)-1] != "virtio_net" {
		t.Errorf("virtio_net is not loaded last: %v", names)
	}
}
