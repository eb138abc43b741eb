package ovf

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const minimal = `<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="d.vmdk" ovf:id="f1" ovf:size="512"/></References>
  <DiskSection><Info>d</Info><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="%s" ovf:capacityAllocationUnits="%s" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="vm1"><Info>x</Info>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>512</rasd:VirtualQuantity></Item>
      <Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>`

func descriptor(capacity, units string) []byte {
	return []byte(strings.Replace(strings.Replace(minimal, "%s", capacity, 1), "%s", units, 1))
}

func TestCapacityUnits(t *testing.T) {
	for _, c := range []struct {
		qty, units string
		want       int64
	}{
		{"30", "byte * 2^20", 30 << 20}, {"8", "byte * 2^30", 8 << 30}, {"4096", "MegaBytes", 4 << 30},
		{"1073741824", "", 1 << 30}, {"2", "byte*2^40", 2 << 40}, {"5", "byte * 10^9", 5e9},
	} {
		env, err := Parse(descriptor(c.qty, c.units))
		if err != nil {
			t.Fatalf("%s %s: %v", c.qty, c.units, err)
		}
		if env.Disks[0].CapacityBytes != c.want {
			t.Errorf("%s %s = %d, want %d", c.qty, c.units, env.Disks[0].CapacityBytes, c.want)
		}
	}
}

// Hostile descriptors fail with an error that names the problem, fast and
// in bounded memory.
func TestHostileDescriptors(t *testing.T) {
	bomb := `<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">` +
		`<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]><Envelope xmlns="` + NS1 + `">&lol3;</Envelope>`
	xxe := `<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><Envelope xmlns="` + NS1 + `">&xxe;</Envelope>`
	deep := `<Envelope xmlns="` + NS1 + `">` + strings.Repeat("<a>", 100) + strings.Repeat("</a>", 100) + `</Envelope>`
	for name, c := range map[string]struct{ doc, want string }{
		"entity bomb":        {bomb, "DOCTYPE"},
		"external entity":    {xxe, "DOCTYPE"},
		"undefined entity":   {`<Envelope xmlns="` + NS1 + `">&xxe;</Envelope>`, "not well-formed"},
		"deep nesting":       {deep, "deeper than"},
		"not XML":            {"\x00\x01PK garbage", "not well-formed"},
		"empty":              {"", "empty"},
		"truncated":          {minimal[:400], "not well-formed"},
		"1 EiB disk":         {string(descriptor("1", "byte * 2^60")), "at most 64 TiB"},
		"2^70 bytes":         {string(descriptor("1", "byte * 2^70")), "does not fit"},
		"capacity not a num": {string(descriptor("lots", "")), "not a whole number"},
		"zero capacity":      {string(descriptor("0", "")), "must hold something"},
		"utf-16":             {`<?xml version="1.0" encoding="UTF-16"?><Envelope/>`, "character set"},
		"two roots":          {`<Envelope xmlns="` + NS1 + `"/><Envelope/>`, "more than one root"},
		"wrong root":         {`<html/>`, "not an OVF descriptor"},
	} {
		env, err := Parse([]byte(c.doc))
		if err == nil {
			_, err = env.Plan(Options{})
		}
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, c.want)
		}
	}
	big := make([]byte, MaxDescriptorBytes+1)
	if _, err := Parse(big); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a descriptor over the limit: %v", err)
	}
}

func tarOf(t *testing.T, entries ...*tar.Header) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range entries {
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		must(t, tw.WriteHeader(h))
		if h.Typeflag == tar.TypeReg {
			_, _ = tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
	}
	must(t, tw.Close())
	return b.Bytes()
}

// An OVA that tries to leave its folder, or holds links or devices, is
// refused before anything of it is used.
func TestHostileOVAs(t *testing.T) {
	for name, c := range map[string]struct {
		hdr  *tar.Header
		want string
	}{
		"dot-dot":       {&tar.Header{Name: "../../etc/cron.d/x", Size: 1}, "outside the package"},
		"absolute":      {&tar.Header{Name: "/etc/passwd", Size: 1}, "absolute"},
		"symlink":       {&tar.Header{Name: "disk.vmdk", Linkname: "/dev/sda", Typeflag: tar.TypeSymlink}, "link"},
		"hard link":     {&tar.Header{Name: "disk.vmdk", Linkname: "/etc/shadow", Typeflag: tar.TypeLink}, "link"},
		"device":        {&tar.Header{Name: "sda", Typeflag: tar.TypeBlock}, "not a regular file"},
		"fifo":          {&tar.Header{Name: "p", Typeflag: tar.TypeFifo}, "not a regular file"},
		"backslashes":   {&tar.Header{Name: `..\..\x`, Size: 1}, "non-portable"},
		"nested dotdot": {&tar.Header{Name: "a/../../b", Size: 1}, "outside the package"},
	} {
		data := tarOf(t, &tar.Header{Name: "x.ovf", Size: 3}, c.hdr)
		_, err := ReadOVA(bytes.NewReader(data))
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
	good := tarOf(t, &tar.Header{Name: "x.ovf", Size: 3}, &tar.Header{Name: "disk.vmdk", Size: 4096})
	if _, err := ReadOVA(bytes.NewReader(good[:1500])); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("a truncated OVA: %v", err)
	}
	dup := tarOf(t, &tar.Header{Name: "x.ovf", Size: 3}, &tar.Header{Name: "./x.ovf", Size: 3})
	if _, err := ReadOVA(bytes.NewReader(dup)); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a duplicate entry: %v", err)
	}
	// Offsets point at each file's data, so disks are read in place.
	var offs []TarEntry
	must(t, ScanOVA(bytes.NewReader(good), func(e TarEntry, _ io.Reader) error { offs = append(offs, e); return nil }))
	if len(offs) != 2 || offs[1].Offset != 1536 || offs[1].Size != 4096 || good[offs[1].Offset] != 'x' {
		t.Errorf("entries %+v", offs)
	}
}

func TestManifestAndSizes(t *testing.T) {
	desc := descriptor("1", "byte * 2^30")
	env, err := Parse(desc)
	must(t, err)
	plan, err := env.Plan(Options{})
	must(t, err)
	disk := bytes.Repeat([]byte{1}, 512)
	mk := func(mf string, disk []byte) *Package {
		p := NewPackage()
		must(t, p.AddBytes("vm.ovf", desc))
		if mf != "" {
			must(t, p.AddBytes("vm.mf", []byte(mf)))
		}
		must(t, p.AddBytes("d.vmdk", disk))
		return p
	}
	sum := func(b []byte) string {
		p := NewPackage()
		must(t, p.AddBytes("x.ovf", b))
		return p.Files["x.ovf"].Digests["SHA256"]
	}
	good := "SHA256(vm.ovf)= " + sum(desc) + "\nSHA256(d.vmdk)= " + sum(disk) + "\n"
	if w, err := mk(good, disk).Check(env, plan, false); err != nil || len(w) != 0 {
		t.Fatalf("a good package: %v %v", w, err)
	}
	bad := append([]byte{}, disk...)
	bad[100] ^= 1
	if _, err := mk(good, bad).Check(env, plan, false); err == nil || !strings.Contains(err.Error(), "does not match the manifest") {
		t.Errorf("a changed disk: %v", err)
	}
	if w, err := mk(good, bad).Check(env, plan, true); err != nil || !strings.Contains(strings.Join(w, " "), "NOT checked") {
		t.Errorf("--skip-manifest says so loudly: %v %v", w, err)
	}
	if _, err := mk(good, disk[:100]).Check(env, plan, false); err == nil || !strings.Contains(err.Error(), "descriptor says 512") {
		t.Errorf("a size that lies: %v", err)
	}
	if w, err := mk("", disk).Check(env, plan, false); err != nil || !strings.Contains(strings.Join(w, " "), "no manifest") {
		t.Errorf("no manifest: %v %v", w, err)
	}
}

func TestPlanProperties(t *testing.T) {
	data, err := os.ReadFile("testdata/properties.ovf")
	must(t, err)
	env, err := Parse(data)
	must(t, err)
	if _, err := env.Plan(Options{Properties: map[string]string{"nosuch": "1"}}); err == nil || !strings.Contains(err.Error(), "not in the package") {
		t.Errorf("unknown property: %v", err)
	}
	if _, err := env.Plan(Options{Properties: map[string]string{"port": "seventy"}}); err == nil || !strings.Contains(err.Error(), "not a uint16") {
		t.Errorf("bad value: %v", err)
	}
	if _, err := env.Plan(Options{Deployment: "huge"}); err == nil || !strings.Contains(err.Error(), "small, large") {
		t.Errorf("unknown deployment: %v", err)
	}
	p, err := env.Plan(Options{Deployment: "large", Properties: map[string]string{"hostname": "web1", "port": "8080"}})
	must(t, err)
	got := map[string]string{}
	for _, pv := range p.Properties {
		got[pv.Key] = pv.Value
	}
	if got["org.example.hostname"] != "web1" || got["org.example.port"] != "8080" || got["org.example.mode"] != "prod" {
		t.Errorf("properties %v", got)
	}
	if vm := p.VMs[0]; vm.CPUs != 4 || vm.MemoryBytes != 8<<30 || p.Deployment != "large" {
		t.Errorf("large deployment: %d CPUs, %d bytes", vm.CPUs, vm.MemoryBytes)
	}
	p, err = env.Plan(Options{})
	must(t, err)
	if vm := p.VMs[0]; vm.CPUs != 1 || vm.MemoryBytes != 1<<30 || p.Deployment != "small" || len(p.EULAs) != 1 {
		t.Errorf("default deployment: %d CPUs, %d bytes, %s, %d EULAs", vm.CPUs, vm.MemoryBytes, p.Deployment, len(p.EULAs))
	}
	env2 := Environment("vm1", p.Properties)
	if !bytes.Contains(env2, []byte(`oe:key="org.example.mode" oe:value="prod"`)) {
		t.Errorf("OVF environment:\n%s", env2)
	}
}

// Export writes a descriptor that reads back as the same VM, in OVF 1.0
// and 2.0 (golden files: go test -update).
func TestWriteRoundTrip(t *testing.T) {
	vm := ExportVM{Name: "web1", Description: "a <web> server", CPUs: 2, MemoryBytes: 3 << 30, OSType: "debian11_64Guest",
		Disks: []ExportDisk{
			{File: "web1-disk0.vmdk", FileSize: 123456, CapacityBytes: 10 << 30, PopulatedBytes: 1 << 20, Bus: BusVirtio},
			{File: "web1-disk1.vmdk", FileSize: 4096, CapacityBytes: 20 << 30, Bus: BusSCSI},
			{File: "web1-disk2.vmdk", FileSize: 4096, CapacityBytes: 1 << 30, Bus: BusSATA},
		},
		NICs: []ExportNIC{{Network: "vm-network", Model: "virtio"}, {Network: "dmz", Model: "e1000"}},
	}
	for _, version := range []string{"1.0", "2.0"} {
		var b bytes.Buffer
		must(t, WriteDescriptor(&b, vm, version))
		golden := filepath.Join("testdata", "export-"+version+".ovf")
		if *update {
			must(t, os.WriteFile(golden, b.Bytes(), 0o644))
		}
		want, err := os.ReadFile(golden)
		must(t, err)
		if !bytes.Equal(b.Bytes(), want) {
			t.Errorf("OVF %s differs from %s (go test -update to accept):\n%s", version, golden, b.String())
		}
		env, err := Parse(b.Bytes())
		must(t, err)
		p, err := env.Plan(Options{})
		must(t, err)
		got := p.VMs[0]
		if env.Version != version || got.Name != "web1" || got.CPUs != 2 || got.MemoryBytes != 3<<30 || got.Annotation != vm.Description || got.OSType != vm.OSType {
			t.Errorf("OVF %s reads back as %+v", version, got)
		}
		if len(got.Disks) != 3 || len(got.NICs) != 2 {
			t.Fatalf("OVF %s: disks %+v nics %+v", version, got.Disks, got.NICs)
		}
		for i, d := range got.Disks {
			if d.Bus != vm.Disks[i].Bus || d.CapacityBytes != vm.Disks[i].CapacityBytes || d.File.Href != vm.Disks[i].File || d.File.Size != vm.Disks[i].FileSize {
				t.Errorf("OVF %s disk %d: %+v", version, i, d)
			}
		}
		for i, n := range got.NICs {
			if n.Model != vm.NICs[i].Model || n.Network != vm.NICs[i].Network {
				t.Errorf("OVF %s nic %d: %+v", version, i, n)
			}
		}
		if len(p.Warnings) != 0 {
			t.Errorf("OVF %s: warnings %q", version, p.Warnings)
		}
	}
}

// The firmware comes from VMware's vmw:Config or VirtualBox's vbox:Machine;
// EFI gets a warning (vdc VMs boot with SeaBIOS).
func TestFirmware(t *testing.T) {
	vmw := strings.Replace(minimal, "<VirtualHardwareSection><Info>hw</Info>",
		`<VirtualHardwareSection xmlns:vmw="`+VMWNS+`"><Info>hw</Info><vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>`, 1)
	vbox := strings.Replace(minimal, "<VirtualHardwareSection>",
		`<vbox:Machine xmlns:vbox="`+VBoxNS+`" ovf:required="false" version="1.16-linux" uuid="{x}" name="x"><ovf:Info>VirtualBox</ovf:Info><Hardware><Firmware type="EFI64"/></Hardware></vbox:Machine><VirtualHardwareSection>`, 1)
	for name, doc := range map[string]string{"vmw": vmw, "vbox": vbox} {
		env, err := Parse([]byte(strings.Replace(strings.Replace(doc, "%s", "1", 1), "%s", "byte * 2^30", 1)))
		must(t, err)
		p, err := env.Plan(Options{})
		must(t, err)
		if p.VMs[0].Firmware != "efi" || !strings.Contains(strings.Join(p.Warnings, " "), "EFI") {
			t.Errorf("%s: firmware %q, warnings %q", name, p.VMs[0].Firmware, p.Warnings)
		}
	}
}

// A VM with no disk in a package (a VM that booted a kernel image where it
// was made, say) has nothing to boot from here: the plan says so.
func TestPlanOfADisklessVMWarns(t *testing.T) {
	doc := strings.Replace(minimal, `<Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>`, "", 1)
	env, err := Parse([]byte(strings.Replace(strings.Replace(doc, "%s", "1", 1), "%s", "byte * 2^30", 1)))
	must(t, err)
	p, err := env.Plan(Options{})
	must(t, err)
	if len(p.VMs[0].Disks) != 0 || !strings.Contains(strings.Join(p.Warnings, "\n"), "vm vm1: the VM has no disk: it has nothing to boot from") {
		t.Errorf("disks %+v, warnings %q", p.VMs[0].Disks, p.Warnings)
	}
}
