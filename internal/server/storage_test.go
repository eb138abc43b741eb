package server_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// names shows a tree as "child<parent" by name.
func names(snaps []api.VMSnapshot) string {
	byID := map[string]string{}
	for _, s := range snaps {
		byID[s.ID] = s.Name
	}
	var out []string
	for _, s := range snaps {
		out = append(out, s.Name+"<"+byID[s.ParentID])
	}
	return strings.Join(out, " ")
}

// snapshotName is the name of the snapshot with ID id.
func snapshotName(vm *api.VM, id string) string {
	for _, s := range vm.Spec.Snapshots {
		if s.ID == id {
			return s.Name
		}
	}
	return ""
}

// The same storage API on sim: a snapshot tree with branches, deletes
// that merge, linked and full clones with new MACs, templates guarded by
// their dependents, disks added, grown and removed.
func TestStorageLifecycleOnSim(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("512MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("10GiB")}}, Labels: map[string]string{"sim.vdc.io/disk-used": "2GiB"}, PowerOn: true}))
	d.run(d.c.CreateSnapshot(ctx, "v1", api.SnapshotCreateRequest{Name: "s1", Memory: true}))
	d.run(d.c.CreateSnapshot(ctx, "v1", api.SnapshotCreateRequest{Name: "s2"}))
	vm := d.vm("v1")
	if snapshotName(vm, vm.Spec.CurrentSnapshotID) != "s2" || !strings.Contains(vm.Spec.Disks[0].Path, "disk0-") {
		t.Fatalf("after two snapshots: current %q, disk %s", vm.Spec.CurrentSnapshotID, vm.Spec.Disks[0].Path)
	}
	snaps, err := d.c.Snapshots(ctx, "v1")
	if err != nil || names(snaps) != "s1< s2<s1" || !snaps[0].Memory {
		t.Fatalf("snapshots %s (%v)", names(snaps), err)
	}
	// Provisioned counts the snapshots' disks and saved memory.
	if st := vm.Status.Storage; st == nil || st.CapacityBytes != api.MustSize("10GiB") || st.ProvisionedBytes != api.MustSize("30GiB")+api.MustSize("512MiB") {
		t.Fatalf("storage %+v", vm.Status.Storage)
	}
	// Revert to a memory snapshot: running again.
	d.run(d.c.RevertSnapshot(ctx, "v1", "s1"))
	if vm := d.vm("v1"); vm.Status.PowerState != api.PowerOn || snapshotName(vm, vm.Spec.CurrentSnapshotID) != "s1" {
		t.Fatalf("after revert: %s, current %s", vm.Status.PowerState, vm.Spec.CurrentSnapshotID)
	}
	// s1 has two branches now (s2, and the current state): deleting it
	// keeps its data, hidden; deleting s2 then merges it away.
	tk := d.run(d.c.DeleteSnapshot(ctx, "v1", "s1"))
	if !strings.Contains(string(tk.Result), "stays until") {
		t.Fatalf("delete s1: %s", tk.Result)
	}
	if snaps, _ := d.c.Snapshots(ctx, "v1"); names(snaps) != "s2<" {
		t.Fatalf("after deleting s1: %s", names(snaps))
	}
	d.run(d.c.DeleteSnapshot(ctx, "v1", "s2"))
	if vm := d.vm("v1"); len(vm.Spec.Snapshots) != 0 || !strings.HasSuffix(vm.Spec.Disks[0].Path, "/disk0.qcow2") {
		t.Fatalf("after deleting both: %d snapshots, disk %s", len(vm.Spec.Snapshots), vm.Spec.Disks[0].Path)
	}

	// Clones.
	d.run(d.c.CreateSnapshot(ctx, "v1", api.SnapshotCreateRequest{Name: "base"}))
	d.run(d.c.Clone(ctx, "v1", api.CloneRequest{Name: "lc", Snapshot: "base", Linked: true, Host: "host-2"}))
	d.run(d.c.Clone(ctx, "v1", api.CloneRequest{Name: "fc"}))
	// A full clone onto another datastore.
	ds2 := filepath.Join(d.dir, "datastore2")
	os.MkdirAll(ds2, 0o755)
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "datastore2", Path: ds2}))
	eventually(t, 20*time.Second, "hosts reaching datastore2", func() bool {
		ds, err := client.Get[*api.Datastore](ctx, d.c, api.KindDatastore, "datastore2")
		return err == nil && len(ds.Status.Hosts) == 2
	})
	d.run(d.c.Clone(ctx, "v1", api.CloneRequest{Name: "fc2", Datastore: "datastore2"}))
	if fc2 := d.vm("fc2"); fc2.Spec.Disks[0].Datastore.Name != "datastore2" {
		t.Fatalf("clone to datastore2 is on %s", fc2.Spec.Disks[0].Datastore.Name)
	}
	src, lc, fc := d.vm("v1"), d.vm("lc"), d.vm("fc")
	if !lc.Spec.Disks[0].Linked || lc.Spec.Host.Name != "host-2" || fc.Spec.Disks[0].Linked {
		t.Fatalf("clones: linked %+v on %s; full %+v", lc.Spec.Disks[0], lc.Spec.Host.Name, fc.Spec.Disks[0])
	}
	if lc.Spec.NICs[0].MAC == src.Spec.NICs[0].MAC || fc.Spec.NICs[0].MAC == src.Spec.NICs[0].MAC {
		t.Fatal("a clone kept its source's MAC")
	}
	_, err = d.c.DeleteSnapshot(ctx, "v1", "base")
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "lc") {
		t.Fatalf("deleting a snapshot a linked clone uses: %v", err)
	}
	_, err = d.c.Delete(ctx, api.KindVM, "v1", map[string][]string{"force": {"true"}})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "lc") {
		t.Fatalf("deleting a VM a linked clone uses: %v", err)
	}

	// Templates.
	d.run(d.c.Power(ctx, "fc", api.PowerRequest{Action: api.ActionStart}))
	if _, err := d.c.MarkTemplate(ctx, "fc", true); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("marking a running VM a template: %v", err)
	}
	d.run(d.c.Power(ctx, "fc", api.PowerRequest{Action: api.ActionStop, Force: true}))
	d.run(d.c.MarkTemplate(ctx, "fc", true))
	if _, err := d.c.Power(ctx, "fc", api.PowerRequest{Action: api.ActionStart}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("starting a template: %v", err)
	}
	tk = d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", FromTemplate: "fc", Linked: true, PowerOn: true}))
	if tk.Op != "vm.clone" {
		t.Fatalf("create from template ran %s", tk.Op)
	}
	if vm := d.vm("web1"); vm.Spec.CPUs != 1 || !vm.Spec.Disks[0].Linked {
		t.Fatalf("vm from template: %+v", vm.Spec)
	}
	tmpls, err := d.c.Templates(ctx)
	if err != nil || len(tmpls) != 1 || tmpls[0].Metadata.Name != "fc" {
		t.Fatalf("templates %v %v", tmpls, err)
	}
	if _, err := d.c.Delete(ctx, api.KindVM, "fc", nil); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "web1") {
		t.Fatalf("deleting a template with a linked clone: %v", err)
	}

	// Disks, on a running VM.
	d.run(d.c.AddDisk(ctx, "v1", api.DiskAddRequest{Size: api.MustSize("1GiB")}))
	d.run(d.c.AddDisk(ctx, "v1", api.DiskAddRequest{Size: api.MustSize("2GiB"), Thick: true}))
	d.run(d.c.ResizeDisk(ctx, "v1", "disk1", api.MustSize("3GiB")))
	d.run(d.c.RemoveDisk(ctx, "v1", "disk1"))
	vm = d.vm("v1")
	if len(vm.Spec.Disks) != 2 || vm.Spec.Disks[1].Name != "disk2" || !vm.Spec.Disks[1].Thick {
		t.Fatalf("disks after add, add, resize, remove: %+v", vm.Spec.Disks)
	}
	// A new disk never takes the name of one a snapshot still has.
	d.run(d.c.AddDisk(ctx, "v1", api.DiskAddRequest{Size: api.MustSize("1GiB")}))
	if vm := d.vm("v1"); vm.Spec.Disks[2].Name != "disk3" {
		t.Fatalf("new disk named %s", vm.Spec.Disks[2].Name)
	}
	eventually(t, 20*time.Second, "the thick disk measured in full", func() bool {
		for _, ds := range d.vm("v1").Status.Disks {
			if ds.Name == "disk2" && ds.AllocatedBytes == api.MustSize("2GiB") {
				return true
			}
		}
		return false
	})
}

// Bad input is refused with the right status and changes nothing.
func TestStorageBadInput(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("512MiB"),
		Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "nodisk", CPUs: 1, Memory: api.MustSize("512MiB")}))
	tok := adminToken(t, d)
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/api/v1/vms/v1/snapshots", `{"name":""}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/snapshots", `{"name":"a b"}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/snapshots", `{"name":"x","bogus":1}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/snapshots", `{"name":`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/nope/snapshots", `{"name":"x"}`, http.StatusNotFound},
		{"POST", "/api/v1/vms/nodisk/snapshots", `{"name":"x"}`, http.StatusConflict},
		{"POST", "/api/v1/vms/v1/snapshots/nope/revert", ``, http.StatusNotFound},
		{"DELETE", "/api/v1/vms/v1/snapshots/nope", ``, http.StatusNotFound},
		{"POST", "/api/v1/vms/v1/clone", `{"name":"v1"}`, http.StatusConflict},
		{"POST", "/api/v1/vms/v1/clone", `{"name":"c","linked":true}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/clone", `{"name":"c","snapshot":"nope"}`, http.StatusNotFound},
		{"POST", "/api/v1/vms/v1/clone", `{"name":"c","host":"nope"}`, http.StatusNotFound},
		{"POST", "/api/v1/vms/v1/disks", `{"size":0}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/disks", `{"size":"1G","bus":"floppy"}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/disks", `{"size":"1P"}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/v1/disks", `{"size":"1G","datastore":"nope"}`, http.StatusNotFound},
		{"PATCH", "/api/v1/vms/v1/disks/disk0", `{"size":"512MiB"}`, http.StatusBadRequest},
		{"PATCH", "/api/v1/vms/v1/disks/disk9", `{"size":"2G"}`, http.StatusNotFound},
		{"DELETE", "/api/v1/vms/v1/disks/disk9", ``, http.StatusNotFound},
		{"POST", "/api/v1/vms", `{"name":"t","fromTemplate":"v1","cpus":1,"memory":"1G"}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms", `{"name":"t","cpus":1,"memory":"1G","cloudInit":{"sshKeys":["nonsense"]}}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms", `{"name":"t","cpus":1,"memory":"1G","cloudInit":{"userData":"hello"}}`, http.StatusBadRequest},
		{"POST", "/api/v1/images/import", `{"name":"i","source":"ftp://x/y"}`, http.StatusBadRequest},
		{"POST", "/api/v1/images/import", `{"name":"i","source":"relative/path"}`, http.StatusBadRequest},
		{"POST", "/api/v1/images/import", `{"name":"i","source":"/x","sha256":"zz"}`, http.StatusBadRequest},
		{"POST", "/api/v1/vms/nope/mark-template", ``, http.StatusNotFound},
	} {
		code, body := rawCall(t, d, c.method, c.path, c.body, tok)
		if code != c.status {
			t.Errorf("%s %s %s: %d %s, want %d", c.method, c.path, c.body, code, body, c.status)
		}
		if !strings.Contains(body, `"message"`) {
			t.Errorf("%s %s: no error message: %s", c.method, c.path, body)
		}
	}
	if n := vmCount(t, d); n != 2 {
		t.Fatalf("bad requests changed the inventory: %d VMs", n)
	}
	if vm := d.vm("v1"); len(vm.Spec.Snapshots) != 0 || len(vm.Spec.Disks) != 1 {
		t.Fatalf("bad requests changed v1: %+v", vm.Spec)
	}
}
