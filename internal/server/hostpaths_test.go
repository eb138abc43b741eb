package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/testenv"
)

// Datastores may not be system directories, the server's data, or share
// files with another datastore a host sees along with them.
func TestDatastorePathsAreChecked(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	ds1 := filepath.Join(d.dir, "datastore1")
	create := func(name, path, host string) error {
		_, err := d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: name, Path: path, Host: host})
		return err
	}
	for path, want := range map[string]string{
		"/":                                 "root directory",
		"/etc":                              "system directory",
		"/etc/vdc":                          "inside the system directory /etc",
		"/usr/lib/vdc":                      "/usr",
		"/proc/self":                        "/proc",
		"/dev/shm/ds":                       "/dev",
		"/tmp":                              "system directory itself",
		"/var":                              "system directory itself",
		"/tmp/../etc":                       "clean absolute path",
		"relative":                          "clean absolute path",
		ds1:                                 "is the directory of datastore datastore1",
		filepath.Join(ds1, "sub"):           "is inside datastore datastore1",
		d.dir:                               "server's data directory",
		filepath.Join(d.dir, "server", "x"): "server's data directory",
		filepath.Join(d.dir, "ds\u001b[2J"): "datastore path has a control character",
	} {
		err := create("bad", path, "")
		t.Logf("%q: %v", path, err)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("datastore at %q: got %v, want an error mentioning %q", path, err, want)
		}
		if !errors.Is(err, api.ErrInvalid) && !errors.Is(err, api.ErrConflict) {
			t.Errorf("datastore at %q: %v is not a 400 or 409", path, err)
		}
	}
	// A datastore holding datastore1 (d.dir/datastore1) from beside the
	// server's data: made in a fresh directory that holds a datastore.
	outer := filepath.Join(t.TempDir(), "outer")
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "inner", Path: filepath.Join(outer, "inner")}))
	if err := create("outer", outer, ""); err == nil || !strings.Contains(err.Error(), "holds datastore inner") {
		t.Errorf("a datastore holding another: %v", err)
	}
	// Local datastores of different hosts may have the same path (each
	// host has its own); on one host, or against a shared one, they clash.
	local := filepath.Join(t.TempDir(), "local")
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "local1", Path: local, Host: "host-1"}))
	d.run(d.c.Create(ctx, api.KindDatastore, api.DatastoreCreateRequest{Name: "local2", Path: local, Host: "host-2"}))
	if err := create("local3", filepath.Join(local, "x"), "host-1"); err == nil || !strings.Contains(err.Error(), "datastore local1") {
		t.Errorf("two overlapping local datastores on one host: %v", err)
	}
	if err := create("shared", local, ""); err == nil || !strings.Contains(err.Error(), "datastore local") {
		t.Errorf("a shared datastore over local ones: %v", err)
	}
	if err := create("loc", filepath.Join(outer, "inner", "x"), "host-1"); err == nil || !strings.Contains(err.Error(), "datastore inner") {
		t.Errorf("a local datastore inside a shared one: %v", err)
	}
	dss, err := client.List[*api.Datastore](ctx, d.c, api.KindDatastore, nil)
	if err != nil || len(dss) != 4 {
		t.Fatalf("datastores: %d %v, want datastore1, inner, local1, local2", len(dss), err)
	}
}

// Image import reads URLs and files in datastores only: nothing else on
// the hosts, whether it exists or not, and not through a symlink either;
// the answer tells nothing of what is outside.
func TestImageImportReadsOnlyDatastoreFiles(t *testing.T) {
	if _, err := os.Stat("/etc/shadow"); err != nil {
		testenv.Skip(t, "no /etc/shadow to try")
	}
	d := newDC(t, 1)
	ctx := context.Background()
	ds1 := filepath.Join(d.dir, "datastore1")
	outside := filepath.Join(d.dir, "secret.img")
	if err := os.WriteFile(outside, make([]byte, 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	imp := func(name, src string) error {
		_, err := d.c.ImportImage(ctx, api.ImageImportRequest{Name: name, Source: src})
		return err
	}
	for _, src := range []string{"/etc/shadow", "/etc/nonexistent", outside, ds1, "/proc/self/environ"} {
		err := imp("probe", src)
		want := "image source " + src + " is not an http(s) URL or a file in a datastore"
		if err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("import %s: got %v, want a 400 saying %q", src, err, want)
		}
	}
	// A symlink in a datastore is followed by the host, which refuses
	// what it leads out to: the task fails, saying only that.
	for link, to := range map[string]string{"shadow.img": "/etc/shadow", "secret.img": outside, "gone.img": "/etc/nonexistent"} {
		if err := os.Symlink(to, filepath.Join(ds1, link)); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(ds1, link)
		task, err := d.c.ImportImage(ctx, api.ImageImportRequest{Name: strings.TrimSuffix(link, ".img"), Source: src})
		if err != nil {
			t.Fatalf("import %s: refused at once (%v); the server cannot tell a symlink, the host does", src, err)
		}
		_, err = d.c.Wait(ctx, task)
		want := "image source " + src + " is not an http(s) URL or a file in a datastore of host host-1"
		t.Logf("%s -> %s: %v", link, to, err)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("import %s -> %s: got %v, want %q", src, to, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "2 MiB") || strings.Contains(err.Error(), "bytes")) {
			t.Errorf("import %s: the error tells the size of what it points at: %v", src, err)
		}
	}
	imgs, _ := client.List[*api.Image](ctx, d.c, api.KindImage, nil)
	if len(imgs) != 0 {
		t.Fatalf("refused imports left images: %d", len(imgs))
	}
}

// vm create --image PATH and --cdrom PATH name files in datastores; a
// file there is copied as a foreign image (checked for backing files),
// not trusted as one of vdc's own.
func TestVMFilesMustBeInDatastores(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	ds1 := filepath.Join(d.dir, "datastore1")
	vm := func(image, cdrom string) (*api.Task, error) {
		return d.c.CreateVM(ctx, api.VMCreateRequest{Name: "f1", CPUs: 1, Memory: api.MustSize("64MiB"), Image: image, CDROM: cdrom,
			Disks: []api.DiskRequest{{Size: api.MustSize("64MiB")}}})
	}
	for _, c := range []struct{ image, cdrom, want string }{
		{"/etc/passwd", "", "image /etc/passwd is not a file in a datastore"},
		{"/etc/nonexistent", "", "image /etc/nonexistent is not a file in a datastore"},
		{"", "/etc/shadow", "cdrom /etc/shadow is not a file in a datastore"},
		{"", filepath.Join(d.dir, "x.iso"), "is not a file in a datastore"},
		{ds1, "", "is not a file in a datastore"},
	} {
		if _, err := vm(c.image, c.cdrom); err == nil || !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("image %q cdrom %q: got %v, want a 400 saying %q", c.image, c.cdrom, err, c.want)
		}
	}
	// The host refuses an ISO that a symlink in the datastore leads out of it.
	if err := os.Symlink("/etc/shadow", filepath.Join(ds1, "shadow.iso")); err != nil {
		t.Fatal(err)
	}
	task, err := vm("", filepath.Join(ds1, "shadow.iso"))
	if err == nil {
		_, err = d.c.Wait(ctx, task)
	}
	if err == nil || !strings.Contains(err.Error(), "cdrom "+filepath.Join(ds1, "shadow.iso")+" is not a file in a datastore of host host-1") {
		t.Errorf("an ISO symlinked to /etc/shadow: %v", err)
	}
	if _, err := d.c.GetVM(ctx, "f1"); err == nil {
		t.Fatal("a refused create left its VM")
	}
	// A file in the datastore is fine, and marked foreign.
	img := filepath.Join(ds1, "files", "base.raw")
	os.MkdirAll(filepath.Dir(img), 0o755)
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	iso := filepath.Join(ds1, "files", "data.iso")
	if err := os.WriteFile(iso, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	d.run(vm(img, iso))
	got := d.vm("f1")
	if d0 := got.Spec.Disks[0]; d0.Source != img || !d0.ForeignSource || got.Spec.CDROM != iso {
		t.Fatalf("vm from a datastore file: %+v cdrom %q", d0, got.Spec.CDROM)
	}
}
