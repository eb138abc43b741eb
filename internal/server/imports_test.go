package server_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/ovf"
	"github.com/vdc-project/vdc/internal/testenv"
)

func needQemuImg(t *testing.T) {
	testenv.NeedTools(t, "qemu-utils", "qemu-img")
}

// A dry run plans from the descriptor alone and changes nothing; bad
// requests get a 4xx that names the problem.
func TestImportDryRunAndBadRequests(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	desc, err := os.ReadFile("../ovf/testdata/properties.ovf")
	if err != nil {
		t.Fatal(err)
	}
	_, plan, err := d.c.Import(ctx, api.ImportRequest{Format: "ovf", Descriptor: string(desc), DryRun: true, Deployment: "large",
		Properties: map[string]string{"hostname": "app1"}, Name: "app1"})
	if err != nil {
		t.Fatal(err)
	}
	vm := plan.VMs[0]
	if vm.Name != "app1" || vm.CPUs != 4 || vm.Memory != api.MustSize("8GiB") || plan.Deployment != "large" || len(plan.EULAs) != 1 || !vm.PropertiesISO {
		t.Errorf("plan: %+v", plan)
	}
	if _, err := d.c.GetVM(ctx, "app1"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("a dry run made a VM: %v", err)
	}
	for name, c := range map[string]struct {
		req  api.ImportRequest
		code error
		want string
	}{
		"bad format":     {api.ImportRequest{Format: "zip", URL: "http://x/y.ova"}, api.ErrInvalid, "ova, ovf or disk"},
		"no source":      {api.ImportRequest{Format: "ova"}, api.ErrInvalid, "one source"},
		"two sources":    {api.ImportRequest{Format: "ova", URL: "http://x/y.ova", Upload: "x"}, api.ErrInvalid, "one source"},
		"ftp":            {api.ImportRequest{Format: "ova", URL: "ftp://x/y.ova"}, api.ErrInvalid, "http or https"},
		"file URL":       {api.ImportRequest{Format: "ova", URL: "file:///etc/passwd"}, api.ErrInvalid, "http or https"},
		"unknown upload": {api.ImportRequest{Format: "ova", Upload: "nope"}, api.ErrNotFound, "no upload"},
		"bad name":       {api.ImportRequest{Format: "ovf", Descriptor: string(desc), DryRun: true, Name: "../x"}, api.ErrInvalid, "name"},
		"unknown prop":   {api.ImportRequest{Format: "ovf", Descriptor: string(desc), DryRun: true, Properties: map[string]string{"x": "1"}}, api.ErrInvalid, "not in the package"},
		"bad deployment": {api.ImportRequest{Format: "ovf", Descriptor: string(desc), DryRun: true, Deployment: "xl"}, api.ErrInvalid, "small, large"},
		"entity bomb": {api.ImportRequest{Format: "ovf", DryRun: true, Descriptor: `<!DOCTYPE x [<!ENTITY a "a">]><Envelope xmlns="` + ovf.NS1 + `"/>`},
			api.ErrInvalid, "DOCTYPE"},
		"unknown port group": {api.ImportRequest{Format: "ovf", Descriptor: string(desc), DryRun: true, Networks: map[string]string{"x": "nope"}}, api.ErrInvalid, "no network"},
		"disk without vm":    {api.ImportRequest{Format: "disk", URL: "http://x/d.vmdk"}, api.ErrInvalid, "needs the VM"},
	} {
		_, _, err := d.c.Import(ctx, c.req)
		if !errors.Is(err, c.code) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v saying %q", name, err, c.code, c.want)
		}
	}
}

func tarBytes(t *testing.T, files ...[2]string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		tw.WriteHeader(&tar.Header{Name: f[0], Size: int64(len(f[1])), Mode: 0o644, Typeflag: tar.TypeReg})
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	return b.Bytes()
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Through the API with sim hosts (qemu-img still converts the disks):
// upload an OVA of two VMs (a VirtualSystemCollection) whose disk is
// gzip-compressed and stored in chunks, import it, export one VM, and read
// the export back.
func TestImportCollectionAndExportThroughTheAPI(t *testing.T) {
	needQemuImg(t)
	d := newDC(t, 1)
	ctx := context.Background()
	disk := strings.Repeat("vdc-disk", 1<<17) // 1 MiB of raw data
	var gz bytes.Buffer
	zw := gzipWriter(&gz)
	zw.Write([]byte(disk))
	zw.Close()
	chunk0, chunk1 := gz.String()[:gz.Len()/2], gz.String()[gz.Len()/2:]
	item := func(id, typ, extra string) string {
		return `<Item>` + extra + `<rasd:InstanceID>` + id + `</rasd:InstanceID><rasd:ResourceType>` + typ + `</rasd:ResourceType></Item>`
	}
	vs := func(id, disk string) string {
		return `<VirtualSystem ovf:id="` + id + `"><Info>vm</Info><VirtualHardwareSection><Info>hw</Info>` +
			item("1", "3", `<rasd:VirtualQuantity>2</rasd:VirtualQuantity>`) +
			item("2", "4", `<rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>256</rasd:VirtualQuantity>`) +
			item("3", "17", `<rasd:HostResource>ovf:/disk/`+disk+`</rasd:HostResource>`) +
			item("4", "10", `<rasd:Connection>VM Network</rasd:Connection><rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>`) +
			`</VirtualHardwareSection></VirtualSystem>`
	}
	desc := `<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="` + ovf.RASDNS + `">
<References><File ovf:href="d.raw.gz" ovf:id="f1" ovf:compression="gzip" ovf:chunkSize="` + fmt.Sprint(len(chunk0)) + `" ovf:size="` + fmt.Sprint(gz.Len()) + `"/></References>
<DiskSection><Info>d</Info><Disk ovf:diskId="d1" ovf:fileRef="f1" ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="raw"/>
<Disk ovf:diskId="d2" ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="raw"/></DiskSection>
<NetworkSection><Info>n</Info><Network ovf:name="VM Network"/></NetworkSection>
<VirtualSystemCollection ovf:id="app"><Info>two VMs</Info>` + vs("web", "d1") + vs("db", "d2") + `</VirtualSystemCollection></Envelope>`
	files := [][2]string{{"app.ovf", desc}, {"app.mf", ""}, {ovf.ChunkName("d.raw.gz", 0), chunk0}, {ovf.ChunkName("d.raw.gz", 1), chunk1}}
	var mf strings.Builder
	for _, f := range append(files[:1:1], files[2:]...) {
		fmt.Fprintf(&mf, "SHA256(%s)= %s\n", f[0], sha(f[1]))
	}
	files[1][1] = mf.String()
	ova := tarBytes(t, files...)

	up, err := d.c.CreateUpload(ctx, api.UploadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.UploadFile(ctx, up.ID, "app.ova", bytes.NewReader(ova), int64(len(ova))); err != nil {
		t.Fatal(err)
	}
	task, _, err := d.c.Import(ctx, api.ImportRequest{Format: "ova", Upload: up.ID, Name: "app", Networks: map[string]string{"VM Network": "vm-network"}})
	done := d.run(task, err)
	var res api.ImportResult
	json.Unmarshal(done.Result, &res)
	if len(res.VMs) != 2 || res.VMs[0].Name != "app-web" || res.VMs[1].Name != "app-db" {
		t.Fatalf("import result: %+v", res)
	}
	web := d.vm("app-web")
	if web.Spec.CPUs != 2 || web.Spec.MemoryBytes != api.MustSize("256MiB") || web.Spec.Disks[0].SizeBytes != api.MustSize("2MiB") ||
		web.Spec.NICs[0].Model != "e1000" || web.Status.Phase != api.PhaseReady {
		t.Errorf("app-web: %+v %+v", web.Spec, web.Status)
	}
	if db := d.vm("app-db"); db.Spec.Disks[0].SizeBytes != api.MustSize("4MiB") {
		t.Errorf("app-db's blank disk: %+v", db.Spec.Disks)
	}
	diskFile := filepath.Join(d.dir, "datastore1", web.Spec.Disks[0].Path)
	raw := filepath.Join(t.TempDir(), "d.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", diskFile, raw).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if b, _ := os.ReadFile(raw); !bytes.Equal(b[:len(disk)], []byte(disk)) || len(b) != 2<<20 {
		t.Errorf("the imported disk holds other data (%d bytes)", len(b))
	}
	if res.Warnings == nil || !strings.Contains(strings.Join(res.Warnings, "\n"), "VmxNet3") {
		t.Errorf("warnings: %q", res.Warnings)
	}
	// The same package again: the names are taken.
	up2, _ := d.c.CreateUpload(ctx, api.UploadRequest{})
	d.c.UploadFile(ctx, up2.ID, "app.ova", bytes.NewReader(ova), int64(len(ova)))
	if _, _, err := d.c.Import(ctx, api.ImportRequest{Format: "ova", Upload: up2.ID, Name: "app"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("importing over existing VMs: %v", err)
	}
	d.c.DeleteUpload(ctx, up2.ID)

	// Export: refused while the VM runs, then an OVA that reads back.
	d.run(d.c.Power(ctx, "app-web", api.PowerRequest{Action: api.ActionStart}))
	if _, err := d.c.Export(ctx, "app-web", api.ExportRequest{}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("export of a running VM: %v", err)
	}
	d.run(d.c.Power(ctx, "app-web", api.PowerRequest{Action: api.ActionStop, Force: true}))
	done = d.run(d.c.Export(ctx, "app-web", api.ExportRequest{Format: "ova"}))
	var ex api.ExportResult
	json.Unmarshal(done.Result, &ex)
	body, _, err := d.c.DownloadExport(ctx, ex.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	pkg, err := ovf.ReadOVA(body)
	body.Close()
	if err != nil {
		t.Fatal(err)
	}
	env, err := ovf.Parse(pkg.Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	p, err := env.Plan(ovf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w, err := pkg.Check(env, p, false); err != nil || len(w) != 0 {
		t.Errorf("the export does not check out: %v %v", w, err)
	}
	if p.VMs[0].CPUs != 2 || p.VMs[0].Disks[0].CapacityBytes != 2<<20 || p.VMs[0].NICs[0].Network != "vm-network" {
		t.Errorf("exported: %+v", p.VMs[0])
	}
	if err := d.c.DeleteExport(ctx, ex.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.c.DownloadExport(ctx, ex.ID, "app-web.ovf"); err == nil {
		t.Error("a deleted export still downloads")
	}
	if ents, _ := os.ReadDir(filepath.Join(d.dir, "datastore1", ".vdc-staging")); len(ents) != 0 {
		t.Errorf("staging folders left: %d", len(ents))
	}
	_ = io.Discard
}

func gzipWriter(w io.Writer) *gzip.Writer { return gzip.NewWriter(w) }

// A package with a license is refused until it is accepted; a disk goes
// into a VM only while the VM is off, and then becomes its next disk.
func TestImportEULAAndDiskIntoAVM(t *testing.T) {
	needQemuImg(t)
	d := newDC(t, 1)
	ctx := context.Background()
	desc, _ := os.ReadFile("../ovf/testdata/properties.ovf")
	ova := tarBytes(t, [2]string{"app.ovf", string(desc)})
	up, err := d.c.CreateUpload(ctx, api.UploadRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.c.UploadFile(ctx, up.ID, "app.ova", bytes.NewReader(ova), int64(len(ova))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.c.Import(ctx, api.ImportRequest{Format: "ova", Upload: up.ID}); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "accept-eula") {
		t.Errorf("a package with a license, not accepted: %v", err)
	}
	task, _, err := d.c.Import(ctx, api.ImportRequest{Format: "ova", Upload: up.ID, AcceptEULA: true, Name: "licensed"})
	d.run(task, err)
	vm := d.vm("licensed")
	if vm.Spec.CPUs != 1 || vm.Status.Phase != api.PhaseReady || len(vm.Spec.Disks) != 1 || vm.Spec.Disks[0].SizeBytes != api.MustSize("1GiB") {
		t.Errorf("licensed: %+v", vm.Spec)
	}
	if iso, err := os.ReadFile(vm.Spec.CDROM); err != nil || !bytes.Contains(iso, []byte(`oe:key="org.example.mode" oe:value="prod"`)) {
		t.Errorf("the OVF environment ISO %q: %v", vm.Spec.CDROM, err)
	}

	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "db1", CPUs: 1, Memory: api.MustSize("128MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("16MiB")}}, PowerOn: true}))
	data := bytes.Repeat([]byte("data"), 1<<18) // 1 MiB raw
	up2, _ := d.c.CreateUpload(ctx, api.UploadRequest{})
	if _, err := d.c.UploadFile(ctx, up2.ID, "data.img", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.c.Import(ctx, api.ImportRequest{Format: "disk", Upload: up2.ID, VM: "db1"}); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "while it is off") {
		t.Errorf("a disk into a running VM: %v", err)
	}
	d.run(d.c.Power(ctx, "db1", api.PowerRequest{Action: api.ActionStop, Force: true}))
	// The plan says the disk goes to the VM that exists, as disk1; that
	// is what it does, not a warning.
	_, plan, err := d.c.Import(ctx, api.ImportRequest{Format: "disk", Upload: up2.ID, VM: "db1", Bus: "scsi", DryRun: true})
	if err != nil || len(plan.VMs) != 1 || !plan.VMs[0].Existing || len(plan.VMs[0].Disks) != 1 || plan.VMs[0].Disks[0].Name != "disk1" || len(plan.Warnings) != 0 {
		t.Errorf("the plan of a disk into db1: %+v %v", plan, err)
	}
	task, _, err = d.c.Import(ctx, api.ImportRequest{Format: "disk", Upload: up2.ID, VM: "db1", Bus: "scsi"})
	done := d.run(task, err)
	var res api.ImportResult
	json.Unmarshal(done.Result, &res)
	vm = d.vm("db1")
	if res.Disk != "disk1" || len(vm.Spec.Disks) != 2 || vm.Spec.Disks[1].SizeBytes != api.MustSize("1MiB") || vm.Spec.Disks[1].Bus != "scsi" {
		t.Errorf("the added disk: %+v %+v", res, vm.Spec.Disks)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("a clean disk import warns: %q", res.Warnings)
	}
	if _, err := os.Stat(filepath.Join(d.dir, "datastore1", vm.Spec.Disks[1].Path)); err != nil {
		t.Errorf("the added disk's file: %v", err)
	}
}

// A canceled import leaves nothing: no VM, no disk, no staging folder.
func TestImportCanceled(t *testing.T) {
	needQemuImg(t)
	d := newDC(t, 0)
	// The conversion waits here until the test has canceled the task.
	entered, release := make(chan struct{}, 1), make(chan struct{})
	d.agentConfig = func(c *agent.Config) {
		c.BeforeConvert = func(ctx context.Context) error {
			entered <- struct{}{}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-release:
				return nil
			}
		}
	}
	d.startAgent("host-1")
	d.waitHosts(1)
	ctx := context.Background()
	raw := filepath.Join(t.TempDir(), "big.raw")
	if err := os.WriteFile(raw, bytes.Repeat([]byte{0xa5}, 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(raw)
	up, _ := d.c.CreateUpload(ctx, api.UploadRequest{})
	fh, _ := os.Open(raw)
	if _, err := d.c.UploadFile(ctx, up.ID, "big.raw", fh, fi.Size()); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	task, _, err := d.c.Import(ctx, api.ImportRequest{Format: "disk", Upload: up.ID, VM: "big"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(time.Minute):
		t.Fatal("the import never reached its conversion")
	}
	if err := d.c.Do(ctx, client.Request{Method: "POST", Path: "/tasks/" + task.Metadata.ID + "/cancel"}, nil); err != nil {
		t.Fatalf("cancel the import while it converts: %v", err)
	}
	close(release)
	final, _ := d.c.Wait(ctx, task)
	if final.State != api.TaskCanceled {
		t.Fatalf("import after cancel: %s %+v", final.State, final.Error)
	}
	if _, err := d.c.GetVM(ctx, "big"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("a canceled import left its VM: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(d.dir, "datastore1"))
	for _, e := range ents {
		if e.Name() != ".vdc-staging" {
			t.Errorf("a canceled import left %s", e.Name())
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(d.dir, "datastore1", ".vdc-staging")); len(ents) != 0 {
		t.Errorf("staging folders left: %d", len(ents))
	}
}

// A VM that boots a kernel image directly has nothing to boot from in an
// OVF package (its disks): the export is refused up front, saying why,
// and leaves nothing behind.
func TestExportOfAKernelBootVMIsRefused(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindImage, api.ImageCreateRequest{Name: "tiny", Type: api.ImageKernel, Cmdline: "console=ttyS0"}))
	for _, f := range []string{"kernel", "initrd"} {
		body := []byte("not really a " + f)
		d.run(d.c.UploadImageFile(ctx, "tiny", f, bytes.NewReader(body), int64(len(body))))
	}
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "kb", CPUs: 1, Memory: api.MustSize("128MiB"), Image: "tiny"}))
	if vm := d.vm("kb"); vm.Spec.Boot == nil {
		t.Fatalf("a VM made from a kernel image boots no kernel: %+v", vm.Spec)
	}
	_, err := d.c.Export(ctx, "kb", api.ExportRequest{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 422 || !strings.Contains(ae.Message, "boots the kernel of image tiny directly") ||
		!strings.Contains(ae.Message, "would not boot") {
		t.Fatalf("export of a VM that boots a kernel image: want 422 saying why, got %v", err)
	}
	if tasks := tasksOf(t, d, "vm.export"); len(tasks) != 0 {
		t.Errorf("a refused export made a task: %+v", tasks[0])
	}
	if ents, _ := os.ReadDir(filepath.Join(d.dir, "datastore1", ".vdc-staging")); len(ents) != 0 {
		t.Errorf("a refused export left staging folders: %d", len(ents))
	}
}
