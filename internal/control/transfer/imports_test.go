package transfer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/ovf"
	"github.com/vdc-project/vdc/internal/store"
)

func item(id, typ, extra string) string {
	return `<Item>` + extra + `<rasd:InstanceID>` + id + `</rasd:InstanceID><rasd:ResourceType>` + typ + `</rasd:ResourceType></Item>`
}

// system is a VirtualSystem of 1 vCPU and 256 MiB with disk diskID and a
// NIC on network.
func system(id, diskID, network string) string {
	return `<VirtualSystem ovf:id="` + id + `"><Info>vm</Info><VirtualHardwareSection><Info>hw</Info>` +
		item("1", "3", `<rasd:VirtualQuantity>1</rasd:VirtualQuantity>`) +
		item("2", "4", `<rasd:AllocationUnits>MegaBytes</rasd:AllocationUnits><rasd:VirtualQuantity>256</rasd:VirtualQuantity>`) +
		item("3", "17", `<rasd:HostResource>ovf:/disk/`+diskID+`</rasd:HostResource>`) +
		item("4", "10", `<rasd:Connection>`+network+`</rasd:Connection><rasd:ResourceSubType>E1000</rasd:ResourceSubType>`) +
		`</VirtualHardwareSection></VirtualSystem>`
}

// envelope is a descriptor with the references, disks and systems given,
// on the network "VM Network".
func envelope(refs, disks, systems string) string {
	return `<?xml version="1.0"?><Envelope xmlns="` + ovf.NS1 + `" xmlns:ovf="` + ovf.NS1 + `" xmlns:rasd="` + ovf.RASDNS + `">` +
		`<References>` + refs + `</References><DiskSection><Info>d</Info>` + disks + `</DiskSection>` +
		`<NetworkSection><Info>n</Info><Network ovf:name="VM Network"/></NetworkSection>` + systems + `</Envelope>`
}

func fileDisk(diskID, fileID string) string {
	return `<Disk ovf:diskId="` + diskID + `" ovf:fileRef="` + fileID + `" ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^20" ovf:format="raw"/>`
}

// twoVMs is a collection of two VMs (web, db), each with a disk from a
// file of the package (web.raw, db.raw).
func twoVMs() string {
	return envelope(`<File ovf:href="web.raw" ovf:id="f1"/><File ovf:href="db.raw" ovf:id="f2"/>`,
		fileDisk("d1", "f1")+fileDisk("d2", "f2"),
		`<VirtualSystemCollection ovf:id="app"><Info>two VMs</Info>`+system("web", "d1", "VM Network")+system("db", "d2", "VM Network")+`</VirtualSystemCollection>`)
}

// staged is a package as a host would index it from an upload.
func staged(t *testing.T, files ...[2]string) *agent.StagedPackage {
	t.Helper()
	pkg := ovf.NewPackage()
	for _, f := range files {
		if err := pkg.AddBytes(f[0], []byte(f[1])); err != nil {
			t.Fatal(err)
		}
	}
	return &agent.StagedPackage{Package: pkg}
}

// upload is the ID of an upload on the world's datastore.
func (w *world) upload() string { return w.ds.Metadata.ID + "-0123456789abcdef" }

func readProps(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../ovf/testdata/properties.ovf")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Bad and hostile descriptors are refused at planning, with the messages
// the API gives, and nothing is made: no task, no VM, no host call.
func TestImportPlanningRefusesBadDescriptors(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	props := readProps(t)
	oneNIC := func(network string) string {
		return envelope("", `<Disk ovf:diskId="d1" ovf:capacity="1" ovf:capacityAllocationUnits="byte * 2^20"/>`, system("solo", "d1", network))
	}
	dry := func(desc string) api.ImportRequest {
		return api.ImportRequest{Format: api.ImportOVF, Descriptor: desc, DryRun: true}
	}
	for name, c := range map[string]struct {
		req  api.ImportRequest
		code error
		want string
	}{
		"entity bomb":  {dry(`<!DOCTYPE x [<!ENTITY a "a">]><Envelope xmlns="` + ovf.NS1 + `"/>`), api.ErrInvalid, "DOCTYPE"},
		"no namespace": {dry(`<Envelope/>`), api.ErrInvalid, "<Envelope> has no namespace"},
		"no VM":        {dry(`<Envelope xmlns="` + ovf.NS1 + `"><References/></Envelope>`), api.ErrInvalid, "no VM"},
		"unknown property": {api.ImportRequest{Format: api.ImportOVF, Descriptor: props, DryRun: true, Properties: map[string]string{"x": "1"}},
			api.ErrInvalid, "not in the package"},
		"bad deployment": {api.ImportRequest{Format: api.ImportOVF, Descriptor: props, DryRun: true, Deployment: "xl"}, api.ErrInvalid, "small, large"},
		"unknown network": {api.ImportRequest{Format: api.ImportOVF, Descriptor: oneNIC("VM Network"), DryRun: true, Networks: map[string]string{"x": "vm-network"}},
			api.ErrInvalid, `the package has no network "x" to map (its networks: VM Network)`},
		"unmapped network": {dry(oneNIC("VM Network")), api.ErrInvalid,
			`vm solo: network adapter 1 is on the package's network "VM Network": say which port group it goes to with --map-network "VM Network"=PORTGROUP (port groups: backend, vm-network)`},
		"port group of another datacenter": {api.ImportRequest{Format: api.ImportOVF, Descriptor: oneNIC("VM Network"), DryRun: true,
			Networks: map[string]string{"VM Network": "far-away"}}, api.ErrInvalid, `network "VM Network": port group far-away is in another datacenter`},
		"descriptor of a disk": {api.ImportRequest{Format: api.ImportFormatDisk, Descriptor: oneNIC("x"), DryRun: true, Name: "d"}, api.ErrInvalid,
			"a disk import has no descriptor"},
		"too long a property": {api.ImportRequest{Format: api.ImportOVF, Descriptor: props, DryRun: true, Properties: map[string]string{strings.Repeat("k", 300): "1"}},
			api.ErrInvalid, "is too long"},
		"upload of another datastore": {api.ImportRequest{Format: api.ImportOVA, Upload: store.NewID() + "-0123456789abcdef"}, api.ErrNotFound, "its datastore is gone"},
	} {
		_, plan, err := w.svc.Import(ctx, c.req)
		if !errors.Is(err, c.code) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v saying %q", name, err, c.code, c.want)
		}
		if plan != nil {
			t.Errorf("%s: a refused import has a plan: %+v", name, plan)
		}
	}
	if calls := w.hosts.Calls(); len(calls) != 0 {
		t.Errorf("dry runs of descriptors called the hosts: %+v", calls)
	}
	if tasks := state.List[*api.Task](w.st, nil); len(tasks) != 0 {
		t.Errorf("refused imports queued tasks: %+v", tasks)
	}
}

// Bad and hostile uploads are refused before any task, as the host
// indexed them, with the messages the API gives; nothing is made and the
// hosts are asked for nothing but the index.
func TestImportPlanningRefusesBadUploads(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	props := readProps(t)
	hostile := func(href string) string {
		return envelope(`<File ovf:href="`+href+`" ovf:id="f1"/>`, fileDisk("d1", "f1"), system("x", "d1", "VM Network"))
	}
	var index *agent.StagedPackage
	w.hosts.On["StagingIndex"] = func(hoststest.Call) ([]any, error) { return []any{index}, nil }
	for name, c := range map[string]struct {
		pkg  *agent.StagedPackage
		req  api.ImportRequest
		want string
	}{
		"descriptor only": {staged(t, [2]string{"app.ovf", twoVMs()}), api.ImportRequest{Format: api.ImportOVF, Networks: map[string]string{"VM Network": "vm-network"}},
			"the upload holds only the descriptor: upload the files it references too"},
		"file missing": {staged(t, [2]string{"app.ovf", twoVMs()}, [2]string{"web.raw", "w"}), api.ImportRequest{Format: api.ImportOVF, Networks: map[string]string{"VM Network": "vm-network"}},
			"file db.raw (f2) is referenced by the descriptor but not in the package"},
		"license not accepted": {staged(t, [2]string{"app.ovf", props}, [2]string{"readme.txt", "hi"}), api.ImportRequest{Format: api.ImportOVF},
			"the package has a license agreement (1): read it (vdc import ... --dry-run shows it) and accept it with --accept-eula"},
		"file outside the package": {staged(t, [2]string{"app.ovf", hostile("../../etc/shadow")}, [2]string{"x.raw", "x"}), api.ImportRequest{Format: api.ImportOVF},
			`file "../../etc/shadow" points outside the package`},
		"file by URL": {staged(t, [2]string{"app.ovf", hostile("file:///etc/shadow")}, [2]string{"x.raw", "x"}), api.ImportRequest{Format: api.ImportOVF},
			`file "file:///etc/shadow" is referenced by URL; vdc imports only the files the package carries`},
		"absolute file": {staged(t, [2]string{"app.ovf", hostile("/etc/shadow")}, [2]string{"x.raw", "x"}), api.ImportRequest{Format: api.ImportOVF},
			`file "/etc/shadow" has an absolute or non-portable path`},
		"no descriptor": {staged(t, [2]string{"web.raw", "w"}, [2]string{"db.raw", "d"}), api.ImportRequest{Format: api.ImportOVA}, "the package holds no .ovf descriptor"},
	} {
		index = c.pkg
		c.req.Upload = w.upload()
		_, _, err := w.svc.Import(ctx, c.req)
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %v saying %q", name, err, api.ErrInvalid, c.want)
		}
	}
	if tasks := state.List[*api.Task](w.st, nil); len(tasks) != 0 {
		t.Errorf("refused imports queued tasks: %+v", tasks)
	}
	if vms := state.List[*api.VM](w.st, nil); len(vms) != 0 {
		t.Errorf("refused imports made VMs: %+v", vms)
	}
	for _, c := range w.hosts.Calls() {
		if c.Method != "StagingIndex" {
			t.Errorf("a refused import called %s on a host: %+v", c.Method, c)
		}
	}
}

// A dry run plans without making anything: the VMs' names, shapes, disks
// and the port groups their NICs go to.
func TestImportDryRunPlans(t *testing.T) {
	w := newWorld(t)
	_, plan, err := w.svc.Import(context.Background(), api.ImportRequest{Format: api.ImportOVF, Descriptor: twoVMs(), DryRun: true, Name: "app",
		Networks: map[string]string{"VM Network": "backend"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.VMs) != 2 || plan.VMs[0].Name != "app-web" || plan.VMs[1].Name != "app-db" {
		t.Fatalf("plan: %+v", plan.VMs)
	}
	web := plan.VMs[0]
	if web.CPUs != 1 || web.Memory != api.MustSize("256MiB") || len(web.Disks) != 1 || web.Disks[0].File != "web.raw" ||
		len(web.NICs) != 1 || web.NICs[0].PortGroup.Name != "backend" || web.Datastore.Name != "datastore1" {
		t.Errorf("app-web: %+v", web)
	}
	if tasks := state.List[*api.Task](w.st, nil); len(tasks) != 0 {
		t.Errorf("a dry run queued tasks: %+v", tasks)
	}
}

// An import whose second VM's conversion fails undoes everything: both
// VMs (the first one converted and defined) leave the store and their
// hosts, with their folders, and the upload's staging folder goes.
func TestImportWhoseConversionFailsIsUndone(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	pkg := staged(t, [2]string{"app.ovf", twoVMs()}, [2]string{"web.raw", "web data"}, [2]string{"db.raw", "db data"})
	w.hosts.On["StagingIndex"] = func(hoststest.Call) ([]any, error) { return []any{pkg}, nil }
	converts := 0
	w.hosts.On["StagingConvert"] = func(c hoststest.Call) ([]any, error) {
		converts++
		if converts == 2 {
			return nil, fmt.Errorf("qemu-img convert: no space left on device")
		}
		return []any{[]agent.ConvertedDisk{{VirtualBytes: 2 << 20}}}, nil
	}
	task, _, err := w.svc.Import(ctx, api.ImportRequest{Format: api.ImportOVF, Upload: w.upload(), Name: "app",
		Networks: map[string]string{"VM Network": "vm-network"}})
	if err != nil {
		t.Fatal(err)
	}
	w.start(t)
	done := w.wait(t, task.Metadata.ID)
	if done.State != api.TaskFailed || done.Error == nil || !strings.Contains(done.Error.Message, "import vm app-db: qemu-img convert: no space left on device") {
		t.Fatalf("import: %s %+v, want a failure naming the VM and the conversion's error", done.State, done.Error)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if vms := state.List[*api.VM](w.st, nil); len(vms) != 0 {
		t.Errorf("a failed import left VMs: %+v", vms)
	}
	if _, err := state.Read[*api.VM](ctx, w.st, task.Target.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("the import's first VM is still in etcd: %v", err)
	}
	if got := w.vms.Defined(); len(got) != 1 || got[0] != "app-web" {
		t.Errorf("defined: %v, want app-web only (app-db failed before)", got)
	}
	undefined := map[string]bool{}
	for _, c := range w.calls("Undefine") {
		undefined[c.VM] = true
	}
	deleted := map[string]bool{}
	for _, c := range w.calls("DeleteFile") {
		deleted[c.Args[1].(string)] = true
	}
	if len(undefined) != 2 || !undefined[task.Target.ID] {
		t.Errorf("undefined %v, want both VMs, app-web (%s) among them", undefined, task.Target.ID)
	}
	for dir := range deleted {
		if !strings.HasPrefix(dir, "app-web-") && !strings.HasPrefix(dir, "app-db-") {
			t.Errorf("the undo deleted %s, which is no VM folder of the import", dir)
		}
	}
	if len(deleted) != 2 {
		t.Errorf("the undo deleted folders %v, want both VMs'", deleted)
	}
	drops := w.calls("StagingDelete")
	if len(drops) != 1 || drops[0].Args[1] != w.upload() {
		t.Errorf("staging deletes: %+v, want the upload %s's", drops, w.upload())
	}
}
