package transfer_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

// vm stores a ready VM on the world's host with one disk.
func (w *world) vm(t *testing.T, name, power string) *api.VM {
	vm := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name},
		Spec: api.VMSpec{Cluster: api.Ref{ID: w.cl.Metadata.ID}, Host: api.Ref{ID: w.h.Metadata.ID}, CPUs: 1, MemoryBytes: 256 << 20,
			Disks: []api.VMDisk{{Name: "disk0", Datastore: api.Ref{ID: w.ds.Metadata.ID}, Path: name + "/disk0.qcow2", SizeBytes: 1 << 30}}},
		Status: api.VMStatus{Phase: api.PhaseReady, PowerState: power}}
	w.create(t, vm)
	return vm
}

// An export of a VM that runs is refused, saying why, and queues nothing;
// one that was off when asked for, and runs by the time its task starts,
// fails without writing anything.
func TestExportOfARunningVMIsRefused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.vm(t, "web", api.PowerOn)
	_, err := w.svc.Export(ctx, "web", api.ExportRequest{})
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "vm web is on: export it while it is off (its disks must not change)") {
		t.Fatalf("export of a running VM: %v", err)
	}
	if tasks := state.List[*api.Task](w.st, nil); len(tasks) != 0 {
		t.Errorf("a refused export queued a task: %+v", tasks)
	}

	db := w.vm(t, "db", api.PowerOff)
	task, err := w.svc.Export(ctx, "db", api.ExportRequest{Format: api.ImportOVF, Version: "2.0"})
	if err != nil {
		t.Fatalf("export of a VM that is off: %v", err)
	}
	err = state.Update(ctx, w.st, nil, db.Metadata.ID, func(vm *api.VM) error {
		vm.Status.PowerState = api.PowerOn
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	w.start(t)
	done := w.wait(t, task.Metadata.ID)
	if done.State != api.TaskFailed || !strings.Contains(done.Error.Message, "vm db is on: export it while it is off") {
		t.Fatalf("export task of a VM powered on since: %s %+v", done.State, done.Error)
	}
	if calls := w.calls("StagingExport"); len(calls) != 0 {
		t.Errorf("the export wrote files of a running VM: %+v", calls)
	}
}

// Bad export requests are refused before the VM is looked at.
func TestExportBadRequests(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for req, want := range map[api.ExportRequest]string{
		{Format: "zip"}:   `export format must be ova or ovf, got "zip"`,
		{Version: "3.0"}:  `OVF version must be 1.0 or 2.0, got "3.0"`,
		{Format: "ovf"}:   `vm "nope" not found`,
		{Version: "2.0"}:  `vm "nope" not found`,
		{Format: "other"}: `export format must be ova or ovf`,
	} {
		if _, err := w.svc.Export(ctx, "nope", req); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("export %+v: %v, want %q", req, err, want)
		}
	}
}

// An image is imported from an http(s) URL or a file in a datastore of
// its datacenter, nothing else: a path outside is refused at once, with
// the same message whether it exists or not, and makes no image.
func TestImageImportOfAPathOutsideDatastoresIsRefused(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	for _, src := range []string{"/etc/shadow", "/etc/nonexistent", "/proc/self/environ", w.ds.Spec.Path, filepath.Dir(w.ds.Spec.Path) + "/secret.img"} {
		_, err := w.svc.ImportImage(ctx, api.ImageImportRequest{Name: "probe", Source: src})
		want := "image source " + src + " is not an http(s) URL or a file in a datastore"
		if !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("import %s: %v, want a 400 saying %q", src, err, want)
		}
	}
	for src, want := range map[string]string{
		"relative.img":         `image source "relative.img" is not an http(s) URL or a file in a datastore (a clean absolute path)`,
		"/srv/../etc/shadow":   `image source "/srv/../etc/shadow" is not an http(s) URL or a file in a datastore (a clean absolute path)`,
		"":                     "no image source",
		"https:///no-host.img": `image URL "https:///no-host.img" has no host`,
	} {
		if _, err := w.svc.ImportImage(ctx, api.ImageImportRequest{Name: "probe", Source: src}); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("import %q: %v, want a 400 saying %q", src, err, want)
		}
	}
	if imgs := state.List[*api.Image](w.st, nil); len(imgs) != 0 {
		t.Errorf("refused image imports made images: %+v", imgs)
	}
	if tasks := state.List[*api.Task](w.st, nil); len(tasks) != 0 {
		t.Errorf("refused image imports queued tasks: %+v", tasks)
	}
	if calls := w.hosts.Calls(); len(calls) != 0 {
		t.Errorf("refused image imports called hosts: %+v", calls)
	}
}

// A file in a datastore when asked for, whose datastore is gone when the
// task runs, is not fetched: the task fails and the image goes.
func TestImageImportChecksTheSourceAgainWhenItRuns(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	lib := &api.Datastore{Metadata: api.ObjectMeta{ID: store.NewID(), Name: "library"},
		Spec: api.DatastoreSpec{Datacenter: api.Ref{ID: w.dc.Metadata.ID}, Path: t.TempDir(), Shared: true}}
	w.create(t, lib)
	src := filepath.Join(lib.Spec.Path, "base.qcow2")
	task, err := w.svc.ImportImage(ctx, api.ImageImportRequest{Name: "base", Source: src, Datastore: "datastore1"})
	if err != nil {
		t.Fatalf("import of a file in a datastore: %v", err)
	}
	if _, err := w.st.Store.Txn().Delete(lib).Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	w.start(t)
	done := w.wait(t, task.Metadata.ID)
	want := "import image base from " + src + ": image source " + src + " is not an http(s) URL or a file in a datastore; the image was not kept"
	if done.State != api.TaskFailed || done.Error.Message != want {
		t.Fatalf("image import: %s %+v, want %q", done.State, done.Error, want)
	}
	if _, err := state.Read[*api.Image](ctx, w.st, task.Target.ID); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("the failed import kept its image: %v", err)
	}
	if calls := w.calls("Import"); len(calls) != 0 {
		t.Errorf("a host fetched from a datastore that is gone: %+v", calls)
	}
}
