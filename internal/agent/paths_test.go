package agent

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// testAgent is an agent told about datastores, as a heartbeat would.
func testAgent(t *testing.T, dss ...api.DatastoreToCheck) *Agent {
	t.Helper()
	return &Agent{cfg: Config{Name: "h1", DataDir: filepath.Join(t.TempDir(), "agent")}, datastores: dss,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// A datastore whose path leads, through symlinks, to a system directory
// or to the agent's own data is not used, whatever the server says.
func TestDatastoreRootsResolveSymlinks(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.MkdirAll(good, 0o755)
	toEtc := filepath.Join(dir, "to-etc")
	if err := os.Symlink("/etc", toEtc); err != nil {
		t.Fatal(err)
	}
	a := testAgent(t, api.DatastoreToCheck{ID: "good", Path: good}, api.DatastoreToCheck{ID: "etc", Path: toEtc})
	os.MkdirAll(a.cfg.DataDir, 0o700)
	toData := filepath.Join(dir, "to-data")
	if err := os.Symlink(filepath.Dir(a.cfg.DataDir), toData); err != nil {
		t.Fatal(err)
	}
	a.datastores = append(a.datastores, api.DatastoreToCheck{ID: "data", Path: toData}, api.DatastoreToCheck{ID: "root", Path: "/"})
	seen := map[string]api.DatastoreSeen{}
	for _, s := range a.checkDatastores() {
		seen[s.ID] = s
	}
	if !seen["good"].Reachable {
		t.Errorf("a plain datastore is not reachable: %+v", seen["good"])
	}
	for id, want := range map[string]string{"etc": "resolves to /etc: refused", "data": "overlaps this host's data directory", "root": "root directory"} {
		if s := seen[id]; s.Reachable || !strings.Contains(s.Error, want) {
			t.Errorf("datastore %s: %+v, want unreachable with %q", id, s, want)
		}
	}
	if _, err := a.datastorePath("etc", "passwd"); err == nil {
		t.Error("a file of the datastore symlinked to /etc was handed out")
	}
	if p, err := a.datastorePath("good", "images/x/disk"); err != nil || p != filepath.Join(good, "images/x/disk") {
		t.Errorf("a file of a good datastore: %q %v", p, err)
	}
}

// Files are read from datastores only, symlinks resolved, with one
// message whether the file is missing, elsewhere, or not a file.
func TestReadableFileStaysInDatastores(t *testing.T) {
	dir := t.TempDir()
	ds := filepath.Join(dir, "ds")
	os.MkdirAll(filepath.Join(ds, "files"), 0o755)
	a := testAgent(t, api.DatastoreToCheck{ID: "ds", Path: ds})
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("secret"), 0o600)
	inside := filepath.Join(ds, "files", "disk.raw")
	os.WriteFile(inside, make([]byte, 4096), 0o644)
	links := map[string]string{"shadow": "/etc/shadow", "secret": secret, "gone": filepath.Join(dir, "nope"), "ok": inside, "dir": "/etc"}
	for name, to := range links {
		if err := os.Symlink(to, filepath.Join(ds, "files", name)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := a.readableFile("image", filepath.Join(ds, "files", "ok"))
	if err != nil || got != inside {
		t.Errorf("a symlink to a file of the datastore: %q %v", got, err)
	}
	for _, p := range []string{"/etc/shadow", "/etc/nonexistent", secret, filepath.Join(ds, "files", "shadow"), filepath.Join(ds, "files", "secret"),
		filepath.Join(ds, "files", "gone"), filepath.Join(ds, "files", "dir"), filepath.Join(ds, "files"), ds, filepath.Join(ds, "files", "dir", "passwd")} {
		_, err := a.readableFile("image", p)
		want := "image " + p + " is not a file in a datastore of host h1"
		if err == nil || err.Error() != want {
			t.Errorf("readableFile(%s) = %v, want %q", p, err, want)
		}
	}
	// Writes: nothing outside, not through a symlinked folder, not
	// through a dangling symlink (making it would make its target).
	os.Symlink(filepath.Join(dir, "made-by-symlink"), filepath.Join(ds, "dangling"))
	for _, p := range []string{filepath.Join(ds, "files", "dir", "x"), filepath.Join(ds, "dangling", "disk0.qcow2"), "/etc/x", ds} {
		if err := a.inDatastore(p); err == nil {
			t.Errorf("inDatastore(%s) accepted it", p)
		}
	}
	if err := a.inDatastore(filepath.Join(ds, "vm-1", "disk0.qcow2")); err != nil {
		t.Errorf("a new VM's disk: %v", err)
	}
	// A VM's definition: its ISO and a new disk's source are checked.
	cfg := hypervisor.VMConfig{Name: "v", CDROM: filepath.Join(ds, "files", "shadow"),
		Disks: []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(ds, "v", "disk0.qcow2")}}}
	if err := a.checkVMFiles(cfg); err == nil || !strings.Contains(err.Error(), "cdrom ") {
		t.Errorf("an ISO symlinked to /etc/shadow: %v", err)
	}
	cfg.CDROM, cfg.Disks[0].Source = "", "/etc/shadow"
	if err := a.checkVMFiles(cfg); err == nil || !strings.Contains(err.Error(), "image /etc/shadow is not a file in a datastore") {
		t.Errorf("a disk made from /etc/shadow: %v", err)
	}
	cfg.Disks[0].Source = inside
	if err := a.checkVMFiles(cfg); err != nil {
		t.Errorf("a disk made from a datastore file: %v", err)
	}
	// An ISO an older version attached from elsewhere, moved into a
	// datastore with a symlink left behind, is found there.
	old := filepath.Join(dir, "old.iso")
	os.Symlink(inside, old)
	cfg.Disks[0].Source, cfg.CDROM = "", old
	if err := a.checkVMFiles(cfg); err != nil {
		t.Errorf("an ISO symlinked into a datastore: %v", err)
	}
	cfg.CDROM = filepath.Join(dir, "missing.iso")
	if err := a.checkVMFiles(cfg); err == nil || !strings.Contains(err.Error(), "is not a file in a datastore") {
		t.Errorf("a missing ISO outside the datastores: %v", err)
	}
}

// The import call refuses host files outside datastores before any job
// starts, saying nothing of them.
func TestImportRefusesHostFiles(t *testing.T) {
	dir := t.TempDir()
	ds := filepath.Join(dir, "ds")
	os.MkdirAll(ds, 0o755)
	os.Symlink("/etc/shadow", filepath.Join(ds, "shadow.img"))
	a := testAgent(t, api.DatastoreToCheck{ID: "ds", Path: ds})
	mux := http.NewServeMux()
	a.storageRoutes(mux)
	for _, src := range []string{"/etc/shadow", "/etc/nonexistent", filepath.Join(ds, "shadow.img"), "file:///etc/shadow", "relative"} {
		body, _ := json.Marshal(ImportRequest{Path: "images/x/disk", Source: src})
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("POST", "/agent/v1/datastores/ds/import", bytes.NewReader(body)))
		want := "image source " + src + " is not an http(s) URL or a file in a datastore of host h1"
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("import from %s: %d %s, want 400 %q", src, rec.Code, rec.Body, want)
		}
	}
	if len(a.jobs.byID) != 0 {
		t.Fatalf("a refused import started a job")
	}
}
