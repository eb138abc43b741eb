package transfer_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/store"
)

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
	w.hosts.On["Import"] = func(hoststest.Call) ([]any, error) { return nil, fmt.Errorf("the host was asked to fetch it") }
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

// An image from a URL: a host on its datastore fetches it, and the image
// is ready with the file the host measured.
func TestImageImportFromAURL(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	sum := strings.Repeat("ab", 32)
	w.hosts.On["Import"] = func(hoststest.Call) ([]any, error) { return []any{agent.Job{ID: "job-1"}}, nil }
	w.hosts.On["Job"] = func(hoststest.Call) ([]any, error) {
		return []any{agent.Job{ID: "job-1", State: agent.JobSucceeded, File: &agent.FileResult{SizeBytes: 3 << 20, SHA256: sum, Format: "qcow2", VirtualSize: 1 << 30}}}, nil
	}
	task, err := w.svc.ImportImage(ctx, api.ImageImportRequest{Name: "base", Source: "https://images.example/base.qcow2", SHA256: sum})
	if err != nil {
		t.Fatal(err)
	}
	w.start(t)
	if done := w.wait(t, task.Metadata.ID); done.State != api.TaskSucceeded {
		t.Fatalf("image import: %s %+v", done.State, done.Error)
	}
	img, err := state.Read[*api.Image](ctx, w.st, task.Target.ID)
	if err != nil {
		t.Fatal(err)
	}
	if img.Status.Phase != api.ImageReady || img.Status.Format != "qcow2" || img.Status.VirtualSize != 1<<30 || len(img.Status.Files) != 1 ||
		img.Status.Files[0] != (api.ImageFile{Name: "disk", Path: "images/base/disk", SizeBytes: 3 << 20, SHA256: sum}) {
		t.Errorf("image: %+v", img.Status)
	}
	imports := w.calls("Import")
	if len(imports) != 1 || imports[0].Host != "host-1" || imports[0].Args[0] != w.ds.Metadata.ID ||
		imports[0].Args[1] != (agent.ImportRequest{Path: "images/base/disk", Source: "https://images.example/base.qcow2", SHA256: sum}) {
		t.Errorf("host calls: %+v", imports)
	}
}
