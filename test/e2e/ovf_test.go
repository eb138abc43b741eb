package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/testenv"
	"github.com/vdc-project/vdc/internal/testguest"
)

// bootDisk builds the test guest as a bootable raw disk (SYSLINUX on FAT).
func bootDisk(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	g, err := testguest.Build(ctx, testguest.Options{OutDir: filepath.Join(dir, "guest"), CacheDir: filepath.Join(os.TempDir(), "vdc-testguest-cache")})
	if err == nil {
		err = testguest.BootDisk(ctx, g, filepath.Join(dir, "boot.raw"), 48)
	}
	if errors.Is(err, testguest.ErrUnavailable) {
		testenv.Skip(t, "cannot make the bootable test disk: %v", err)
	}
	if err != nil {
		t.Fatalf("bootable test disk: %v", err)
	}
	return filepath.Join(dir, "boot.raw")
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sameData says whether two disk files hold the same data (as the guest
// sees it), whatever their formats.
func sameData(t *testing.T, a, b string) bool {
	out, err := exec.Command("qemu-img", "compare", "-U", a, b).CombinedOutput()
	if err != nil {
		t.Logf("qemu-img compare %s %s: %v %s", a, b, err, out)
	}
	return err == nil
}

type ovaFile struct {
	name string
	data []byte
}

func readOVA(t *testing.T, p string) []ovaFile {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []ovaFile
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, ovaFile{h.Name, b})
	}
}

func writeOVA(t *testing.T, p string, files []ovaFile, extra ...*tar.Header) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Size: int64(len(f.data)), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	for _, h := range extra {
		tw.WriteHeader(h)
	}
	tw.Close()
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// manifest makes an .mf for the files.
func manifest(files []ovaFile) []byte {
	var b bytes.Buffer
	for _, f := range files {
		if !strings.HasSuffix(f.name, ".mf") {
			fmt.Fprintf(&b, "SHA256(%s)= %s\n", f.name, sum(f.data))
		}
	}
	return b.Bytes()
}

// diskPath is a VM disk's file on the test cluster's datastore.
func (cl *cluster) diskPath(vm string, i int) string {
	return filepath.Join(cl.dir, "datastore1", cl.vm(vm).Spec.Disks[i].Path)
}

// A VM exported from vdc imports back with the same hardware and the same
// disk data; a package with properties hands them to the guest on a CD-ROM
// it reads; the export is a package other tools read (OVF 1.0, vmx-10,
// streamOptimized VMDKs, SHA-256 manifest).
func TestOVFExportImportRoundTrip(t *testing.T) {
	cl := newQEMUCluster(t)
	boot := cl.copyToDatastore(bootDisk(t))
	dir := t.TempDir()
	cl.vdc("vm", "create", "src", "--cpus", "2", "--memory", "256MiB", "--image", boot, "--disk", "0", "--disk", "64MiB,bus=scsi",
		"--description", "the test guest on a disk")
	ova := filepath.Join(dir, "src.ova")
	out := cl.vdc("export", "src", "--out", ova)
	t.Log(strings.TrimSpace(out))

	files := readOVA(t, ova)
	if len(files) != 4 || files[0].name != "src.ovf" || files[1].name != "src.mf" || !strings.HasSuffix(files[2].name, ".vmdk") {
		t.Fatalf("OVA entries: %v", files)
	}
	desc := string(files[0].data)
	for _, want := range []string{`ovf:version="1.0"`, "vmx-10", "vmdk.html#streamOptimized", "<rasd:ResourceType>17</rasd:ResourceType>", "lsilogic"} {
		if !strings.Contains(desc, want) {
			t.Errorf("descriptor lacks %s", want)
		}
	}
	if string(files[1].data) != string(manifest([]ovaFile{files[0], files[2], files[3]})) {
		t.Errorf("manifest:\n%s", files[1].data)
	}
	if head := files[2].data[:4]; string(head) != "KDMV" {
		t.Errorf("disk is not a sparse VMDK: %q", head)
	}
	vmdk := filepath.Join(dir, "d.vmdk")
	os.WriteFile(vmdk, files[2].data, 0o644)
	if info := qemuImg(t, "info", vmdk); !strings.Contains(info, "create type: streamOptimized") {
		t.Errorf("exported disk:\n%s", info)
	}

	// A package with properties: the guest gets them on its OVF
	// environment CD-ROM.
	withProps := strings.Replace(desc, "<VirtualHardwareSection>", `<ProductSection ovf:class="org.example">
      <Info>Settings</Info>
      <Property ovf:key="greeting" ovf:type="string" ovf:userConfigurable="true" ovf:value="hello"><Label>Greeting</Label></Property>
      <Property ovf:key="port" ovf:type="uint16" ovf:userConfigurable="true" ovf:value="80"/>
    </ProductSection>
    <VirtualHardwareSection ovf:transport="iso">`, 1)
	app := []ovaFile{{"app.ovf", []byte(withProps)}, {}, {files[2].name, files[2].data}, {files[3].name, files[3].data}}
	app[1] = ovaFile{"app.mf", manifest([]ovaFile{app[0], app[2], app[3]})}
	appOVA := filepath.Join(dir, "app.ova")
	writeOVA(t, appOVA, app)

	plan := cl.vdc("import", "ova", appOVA, "--name", "dst", "--prop", "greeting=bonjour", "--dry-run")
	for _, want := range []string{"VM dst: 2 CPU(s), 256 MiB", "disk0: 48 MiB, virtio", "disk1: 64 MiB, scsi", `org.example.greeting = "bonjour"`, "Nothing was changed"} {
		if !strings.Contains(plan, want) {
			t.Errorf("dry run lacks %q:\n%s", want, plan)
		}
	}
	if _, err := cl.c.GetVM(context.Background(), "dst"); err == nil {
		t.Fatal("a dry run made a VM")
	}
	out = cl.vdc("import", "ova", appOVA, "--name", "dst", "--prop", "greeting=bonjour")
	t.Log(strings.TrimSpace(out))
	src, dst := cl.vm("src"), cl.vm("dst")
	if src.Spec.CPUs != dst.Spec.CPUs || src.Spec.MemoryBytes != dst.Spec.MemoryBytes || src.Spec.Description != dst.Spec.Description ||
		len(src.Spec.Disks) != len(dst.Spec.Disks) || len(src.Spec.NICs) != len(dst.Spec.NICs) {
		t.Fatalf("hardware differs:\n src %+v\n dst %+v", src.Spec, dst.Spec)
	}
	for i := range src.Spec.Disks {
		s, d := src.Spec.Disks[i], dst.Spec.Disks[i]
		if s.SizeBytes != d.SizeBytes || s.Bus != d.Bus {
			t.Errorf("disk %d: %+v vs %+v", i, s, d)
		}
		if !sameData(t, cl.diskPath("src", i), cl.diskPath("dst", i)) {
			t.Errorf("disk %d: the imported data differs from the exported", i)
		}
	}
	if s, d := src.Spec.NICs[0], dst.Spec.NICs[0]; s.Model != d.Model || s.PortGroup.ID != d.PortGroup.ID || s.MAC == d.MAC {
		t.Errorf("nic: %+v vs %+v (same model and port group, a new MAC)", s, d)
	}
	cl.vdc("vm", "start", "dst")
	cl.waitGuest("dst")
	env, err := cl.try("vm", "exec", "dst", "--", "/bin/sh", "-c", "mkdir -p /mnt/env && mount -t iso9660 -o ro /dev/sr0 /mnt/env && cat /mnt/env/ovf_env.xml /mnt/env/props.env")
	if err != nil || !strings.Contains(env, `oe:key="org.example.greeting" oe:value="bonjour"`) || !strings.Contains(env, `org.example.port="80"`) {
		t.Fatalf("the guest's OVF environment: %v\n%s", err, env)
	}
	cl.vdc("vm", "delete", "dst", "--force")
	// The same package from a URL: the host fetches it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.FileServer(http.Dir(dir))}
	go web.Serve(ln)
	defer web.Close()
	url := "http://" + ln.Addr().String() + "/app.ova"
	if plan := cl.vdc("import", "ova", url, "--dry-run"); !strings.Contains(plan, "org.example.greeting") {
		t.Errorf("dry run of a URL:\n%s", plan)
	}
	cl.vdc("import", "ova", url, "--name", "fromurl")
	if !sameData(t, cl.diskPath("src", 0), cl.diskPath("fromurl", 0)) {
		t.Error("the disk imported from a URL differs")
	}
	if out, err := cl.try("import", "ova", "http://"+ln.Addr().String()+"/nope.ova", "--name", "nope"); err == nil || !strings.Contains(out, "404") {
		t.Errorf("a URL that is not there: %v\n%s", err, out)
	}
	if ents, _ := filepath.Glob(filepath.Join(cl.dir, "datastore1", "dst-*")); len(ents) != 0 {
		t.Errorf("deleting the imported VM left %v", ents)
	}
	if _, err := cl.try("export", "src", "--format", "ovf", "--ovf-version", "2.0", "--out", filepath.Join(dir, "ovf2")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ovf2", "src.ovf")); !bytes.Contains(b, []byte("http://schemas.dmtf.org/ovf/envelope/2")) || !bytes.Contains(b, []byte("<StorageItem>")) {
		t.Errorf("OVF 2.0 export:\n%s", b)
	}
	cl.vdc("import", "ovf", filepath.Join(dir, "ovf2", "src.ovf"), "--name", "dst2")
	if d := cl.vm("dst2"); d.Spec.CPUs != 2 || len(d.Spec.Disks) != 2 || !sameData(t, cl.diskPath("src", 0), cl.diskPath("dst2", 0)) {
		t.Errorf("OVF 2.0 folder import: %+v", d.Spec)
	}
	// An OVF folder at a URL: the host fetches the descriptor, then the
	// files it references, beside it.
	cl.vdc("import", "ovf", "http://"+ln.Addr().String()+"/ovf2/src.ovf", "--name", "dst3")
	if d := cl.vm("dst3"); len(d.Spec.Disks) != 2 || !sameData(t, cl.diskPath("src", 1), cl.diskPath("dst3", 1)) {
		t.Errorf("OVF folder from a URL: %+v", d.Spec)
	}
	if out, err := cl.try("export", "dst2-nope"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("export of a missing VM: %v %s", err, out)
	}
	if ents, _ := os.ReadDir(filepath.Join(cl.dir, "datastore1", ".vdc-staging")); len(ents) != 0 {
		t.Errorf("staging folders left: %v", names(ents))
	}
}

// Hostile packages fail with an error that names the problem, leave no VM
// and no file behind.
func TestOVFImportRefusesHostilePackages(t *testing.T) {
	cl := newQEMUCluster(t)
	dir := t.TempDir()
	// A small good package to break in various ways.
	raw := filepath.Join(dir, "d.raw")
	os.WriteFile(raw, bytes.Repeat([]byte("vdc!"), 1<<18), 0o644) // 1 MiB
	vmdk := filepath.Join(dir, "d.vmdk")
	qemuImg(t, "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk)
	disk, _ := os.ReadFile(vmdk)
	descFor := func(capacity, fileAttrs string) string {
		return `<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">
  <References><File ovf:href="d.vmdk" ovf:id="f1" ` + fileAttrs + `/></References>
  <DiskSection><Info>d</Info><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="` + capacity + `" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/></DiskSection>
  <VirtualSystem ovf:id="bad"><Info>x</Info>
    <VirtualHardwareSection><Info>hw</Info>
      <Item><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>1</rasd:VirtualQuantity></Item>
      <Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>64</rasd:VirtualQuantity></Item>
      <Item><rasd:HostResource>ovf:/disk/d1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>`
	}
	good := descFor("1048576", fmt.Sprintf(`ovf:size="%d"`, len(disk)))
	pkg := func(desc string, d []byte) []ovaFile {
		fs := []ovaFile{{"bad.ovf", []byte(desc)}, {}, {"d.vmdk", d}}
		fs[1] = ovaFile{"bad.mf", manifest([]ovaFile{fs[0], fs[2]})}
		return fs
	}
	var bomb bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	zeros := make([]byte, 1<<20)
	for i := 0; i < 256; i++ { // 256 MiB of zeros in ~256 KiB
		zw.Write(zeros)
	}
	zw.Close()
	changed := append([]byte{}, disk...)
	changed[len(changed)/2] ^= 0xff
	cases := map[string]struct {
		files []ovaFile
		extra []*tar.Header
		args  []string
		want  string
	}{
		"path traversal":            {files: append(pkg(good, disk), ovaFile{"../../../etc/cron.d/x", []byte("x")}), want: "outside the package"},
		"absolute path":             {files: append(pkg(good, disk), ovaFile{"/etc/passwd", []byte("x")}), want: "absolute"},
		"symlink":                   {files: pkg(good, disk), extra: []*tar.Header{{Name: "evil", Linkname: "/etc/shadow", Typeflag: tar.TypeSymlink}}, want: "link"},
		"manifest mismatch":         {files: func() []ovaFile { f := pkg(good, disk); f[2].data = changed; return f }(), want: "does not match the manifest"},
		"size that lies":            {files: pkg(descFor("1048576", `ovf:size="999"`), disk), want: "the descriptor says 999"},
		"1 EiB disk":                {files: pkg(descFor("1152921504606846976", fmt.Sprintf(`ovf:size="%d"`, len(disk))), disk), want: "at most 64 TiB"},
		"disk bigger than declared": {files: pkg(descFor("4096", fmt.Sprintf(`ovf:size="%d"`, len(disk))), disk), want: "more than the 4 KiB the descriptor declares"},
		"truncated vmdk":            {files: pkg(descFor("1048576", ""), disk[:len(disk)/2]), want: "cannot be read"},
		"gzip bomb": {files: pkg(strings.Replace(descFor("1048576", `ovf:compression="gzip"`), `href="d.vmdk"`, `href="d.vmdk"`, 1), bomb.Bytes()),
			want: "decompression bomb"},
		"entity bomb": {files: pkg(`<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1">&b;</Envelope>`, disk),
			want: "DOCTYPE"},
		"malformed XML": {files: pkg(good[:300], disk), want: "not well-formed"},
	}
	before, _ := os.ReadDir(filepath.Join(cl.dir, "datastore1"))
	for name, c := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".ova")
		writeOVA(t, p, c.files, c.extra...)
		out, err := cl.try(append([]string{"import", "ova", p, "--name", "bad"}, c.args...)...)
		if err == nil || !strings.Contains(out, c.want) {
			t.Errorf("%s: want an error saying %q, got %v:\n%s", name, c.want, err, out)
			continue
		}
		t.Logf("%s: %s", name, strings.TrimSpace(out))
		if _, err := cl.c.GetVM(context.Background(), "bad"); err == nil {
			t.Fatalf("%s: a VM was left behind", name)
		}
	}
	// --skip-manifest imports a package whose manifest is wrong, and says so.
	p := filepath.Join(dir, "skip.ova")
	f := pkg(good, disk)
	f[1].data = []byte("SHA256(bad.ovf)= " + sum(f[0].data) + "\nSHA256(d.vmdk)= " + strings.Repeat("0", 64) + "\n")
	writeOVA(t, p, f)
	if out, err := cl.try("import", "ova", p, "--name", "skipped"); err == nil || !strings.Contains(out, "does not match the manifest") {
		t.Errorf("a wrong manifest: %v\n%s", err, out)
	}
	if out, err := cl.try("import", "ova", p, "--name", "skipped", "--skip-manifest"); err != nil || !strings.Contains(out, "NOT checked") {
		t.Errorf("--skip-manifest: %v\n%s", err, out)
	}
	cl.vdc("vm", "delete", "skipped")
	// The same files straight from the shared test material, through the
	// API: the ttylinux OVA whose disk is truncated in its source repo.
	if shared := "../../../shared/testdata/ovf/govmomi-ttylinux/ttylinux-pc_i486-16.1.ova"; fileExists(shared) {
		if out, err := cl.try("import", "ova", shared, "--skip-manifest"); err == nil || !strings.Contains(out, "the descriptor says 10595840") {
			t.Errorf("truncated ttylinux OVA: %v\n%s", err, out)
		}
	}
	after, _ := os.ReadDir(filepath.Join(cl.dir, "datastore1"))
	if len(names(after)) != len(names(before)) && !(len(after) == len(before)+1 && contains(names(after), ".vdc-staging")) {
		t.Errorf("failed imports left files: %v -> %v", names(before), names(after))
	}
	if ents, _ := os.ReadDir(filepath.Join(cl.dir, "datastore1", ".vdc-staging")); len(ents) != 0 {
		t.Errorf("staging folders left: %v", names(ents))
	}
	var vms []*api.VM
	cl.json(&vms, "vm", "ls")
	if len(vms) != 0 {
		t.Errorf("VMs left: %d", len(vms))
	}
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// The test guest, converted into every foreign format vdc reads, imports
// as a disk with the same data, and the VM made from it boots.
func TestImportForeignDiskFormats(t *testing.T) {
	boot := bootDisk(t)
	cl := newQEMUCluster(t)
	dir := t.TempDir()
	formats := map[string][]string{
		"vmdk-monolithicSparse": {"-O", "vmdk", "-o", "subformat=monolithicSparse"},
		"vmdk-monolithicFlat":   {"-O", "vmdk", "-o", "subformat=monolithicFlat"},
		"vmdk-streamOptimized":  {"-O", "vmdk", "-o", "subformat=streamOptimized"},
		"vmdk-twoGbMaxExtent":   {"-O", "vmdk", "-o", "subformat=twoGbMaxExtentSparse"},
		"vhd-fixed":             {"-O", "vpc", "-o", "subformat=fixed,force_size=on"},
		"vhd-dynamic":           {"-O", "vpc", "-o", "force_size=on"},
		"vhdx":                  {"-O", "vhdx"},
		"qcow2":                 {"-O", "qcow2"},
		"raw":                   {"-O", "raw"},
		"vdi":                   {"-O", "vdi"},
	}
	var vms []string
	for name, args := range formats {
		// Named without a telling extension: the format comes from the content.
		sub := filepath.Join(dir, name)
		os.MkdirAll(sub, 0o755)
		p := filepath.Join(sub, "guest.img")
		qemuImg(t, append(append([]string{"convert", "-f", "raw"}, args...), boot, p)...)
		vm := "fmt-" + strings.ReplaceAll(name, "-", "")
		vm = strings.ToLower(vm)
		out := cl.vdc("import", "disk", p, "--vm", vm, "--memory", "192MiB", "--bus", "sata")
		t.Logf("%s: %s", name, strings.TrimSpace(out))
		if !sameData(t, boot, cl.diskPath(vm, 0)) {
			t.Errorf("%s: the imported disk's data differs from the original", name)
		}
		vms = append(vms, vm)
	}
	// A bad disk: a qcow2 that points at a backing file on the host.
	evil := filepath.Join(dir, "evil.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", evil)
	if out, err := cl.try("import", "disk", evil, "--vm", "evil"); err == nil || !strings.Contains(out, "backing file") {
		t.Errorf("a qcow2 with a backing file: %v\n%s", err, out)
	}
	// Adding a disk to an existing VM that is off.
	data := filepath.Join(dir, "data.vhdx")
	qemuImg(t, "create", "-f", "vhdx", data, "32M")
	cl.vdc("import", "disk", data, "--vm", vms[0])
	if d := cl.vm(vms[0]).Spec.Disks; len(d) != 2 || d[1].SizeBytes != api.MustSize("32MiB") || d[1].Bus != api.BusVirtio {
		t.Errorf("the added disk: %+v", d)
	}
	// Every converted VM boots: started in groups to bound the load.
	for i := 0; i < len(vms); i += 5 {
		group := vms[i:min(i+5, len(vms))]
		for _, vm := range group {
			cl.vdc("vm", "start", vm)
		}
		for _, vm := range group {
			cl.waitGuest(vm)
			cl.vdc("vm", "stop", vm, "--force")
		}
	}
}

// A dry run of an OVF whose files are not beside it shows the plan from
// the descriptor, as for a URL, with each missing file as a warning; the
// import itself refuses, naming the file, and makes nothing.
func TestOVFDryRunWithoutItsFiles(t *testing.T) {
	cl := newCluster(t)
	cl.inventoryN(1)
	desc, err := os.ReadFile("../../internal/ovf/testdata/export-1.0.ovf")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "web1.ovf")
	if err := os.WriteFile(p, desc, 0o644); err != nil {
		t.Fatal(err)
	}
	plan := cl.vdc("import", "ovf", p, "--dry-run")
	for _, want := range []string{"VM web1:", "disk0:", "Warnings:", "file web1-disk0.vmdk of the package is missing",
		"file web1-disk2.vmdk of the package is missing", "checked at import", "Nothing was changed (dry run)."} {
		if !strings.Contains(plan, want) {
			t.Errorf("the dry run does not say %q:\n%s", want, plan)
		}
	}
	out, err := cl.try("import", "ovf", p, "--name", "w1")
	if err == nil || !strings.Contains(out, "web1-disk0.vmdk") || !strings.Contains(out, "missing") {
		t.Errorf("an import without the files: %v\n%s", err, out)
	}
	var vms []*api.VM
	cl.json(&vms, "vm", "ls")
	if len(vms) != 0 {
		t.Errorf("a refused import made %d VMs", len(vms))
	}
}
