package disk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

func detectBytes(b []byte) (Detected, error) { return Detect(bytes.NewReader(b), int64(len(b))) }

// Hostile images are refused from their first bytes; others are named by
// content whatever the file is called.
func TestDetectRefusesWhatReachesOtherFiles(t *testing.T) {
	qcow := make([]byte, 512)
	copy(qcow, "QFI\xfb\x00\x00\x00\x03")
	binary.BigEndian.PutUint64(qcow[8:], 512) // backing file offset
	vmdk0 := make([]byte, 1024)
	copy(vmdk0, "KDMV") // capacity 0: the embedded descriptor would rule
	vhdDiff := make([]byte, 512)
	copy(vhdDiff, "conectix")
	binary.BigEndian.PutUint32(vhdDiff[60:], 4)
	desc := func(extent string) []byte {
		return []byte("# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\nRW 2048 FLAT \"" + extent + "\" 0\n")
	}
	for name, c := range map[string]struct {
		data []byte
		want string
	}{
		"qcow2 backing file": {qcow, "backing file"},
		"vmdk capacity 0":    {vmdk0, "capacity is 0"},
		"vhd differencing":   {vhdDiff, "differencing"},
		"extent outside":     {desc("../../etc/shadow"), "not a plain file name"},
		"absolute extent":    {desc("/dev/sda"), "not a plain file name"},
		"raw device mapping": {[]byte("# Disk DescriptorFile\ncreateType=\"vmfsRawDeviceMap\"\nRW 2048 VMFSRDM \"x-rdm.vmdk\"\n"), "raw device"},
		"device extent":      {[]byte("# Disk DescriptorFile\ncreateType=\"custom\"\nRW 2048 DEVICE \"/dev/sdb\"\n"), "not a file"},
		"qed":                {[]byte("QED\x00" + strings.Repeat("\x00", 600)), "QED"},
	} {
		if _, err := detectBytes(c.data); err == nil || !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	d, err := detectBytes(desc("disk-flat.vmdk"))
	if err != nil || d.Format != FormatVMDK || d.Variant != "monolithicFlat" || len(d.Extents) != 1 {
		t.Errorf("a good descriptor: %+v %v", d, err)
	}
	if d, _ := detectBytes(bytes.Repeat([]byte{0}, 4096)); d.Format != FormatRaw {
		t.Errorf("zeros: %+v", d)
	}
}

// Every format qemu-img writes is named from its content, including a
// fixed VHD, which qemu-img itself takes for raw.
func TestDetectFormatsQemuImgWrites(t *testing.T) {
	if !Available() {
		testenv.Skip(t, "qemu-img is not installed (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	for name, c := range map[string]struct {
		args         []string
		format, vari string
	}{
		"sparse": {[]string{"-f", "vmdk", "-o", "subformat=monolithicSparse"}, FormatVMDK, "monolithicSparse"},
		"stream": {[]string{"-f", "vmdk", "-o", "subformat=streamOptimized"}, FormatVMDK, "streamOptimized"},
		"flat":   {[]string{"-f", "vmdk", "-o", "subformat=monolithicFlat"}, FormatVMDK, "monolithicFlat"},
		"split":  {[]string{"-f", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"}, FormatVMDK, "twoGbMaxExtentSparse"},
		"vhdfix": {[]string{"-f", "vpc", "-o", "subformat=fixed"}, FormatVPC, "fixed"},
		"vhddyn": {[]string{"-f", "vpc"}, FormatVPC, "dynamic"},
		"vhdx":   {[]string{"-f", "vhdx"}, FormatVHDX, ""},
		"vdi":    {[]string{"-f", "vdi"}, FormatVDI, ""},
		"qcow2":  {[]string{"-f", "qcow2"}, FormatQcow2, ""},
		"raw":    {[]string{"-f", "raw"}, FormatRaw, ""},
	} {
		p := filepath.Join(dir, name, "disk.img")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if out, err := exec.Command(QemuImg, append(append([]string{"create", "-q"}, c.args...), p, "8M")...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v %s", name, err, out)
		}
		d, err := DetectFile(p)
		if err != nil || d.Format != c.format || d.Variant != c.vari {
			t.Errorf("%s: %+v %v, want %s %s", name, d, err, c.format, c.vari)
		}
	}
}

// The ISO holds the files under the names Linux shows, in a volume with
// the label asked for.
func TestWriteISO(t *testing.T) {
	var b bytes.Buffer
	if err := WriteISO(&b, "OVF ENV", map[string][]byte{"OVF_ENV.XML": []byte("<Environment/>"), "PROPS.ENV": []byte("a=1\n")}); err != nil {
		t.Fatal(err)
	}
	iso := b.Bytes()
	if string(iso[0x8001:0x8006]) != "CD001" || strings.TrimSpace(string(iso[0x8028:0x8048])) != "OVF ENV" {
		t.Fatalf("not an ISO 9660 volume labeled OVF ENV")
	}
	if !bytes.Contains(iso, []byte("OVF_ENV.XML;1")) || !bytes.Contains(iso, []byte("<Environment/>")) {
		t.Error("the file is missing")
	}
	if err := WriteISO(&b, "X", map[string][]byte{"ovf-env.xml": nil}); err == nil {
		t.Error("a name ISO 9660 level 1 cannot hold was accepted")
	}
}
