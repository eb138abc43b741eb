package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// The agent runs as root and does what the server asks with paths the
// server computed from datastores or that a user named. The server checks
// them as written; the host checks them again here, as they are on its
// file system, symlinks resolved: a datastore (or a file in one) that is
// a symlink to /etc is /etc.

// datastoreRoot is the directory of one of the datastores the server told
// this host about, as configured, after checking that it resolves to no
// system directory and does not hold (or lie in) the agent's own data.
func (a *Agent) datastoreRoot(ds api.DatastoreToCheck) (resolved string, err error) {
	if err := api.ValidateDatastorePath(ds.Path); err != nil {
		return "", err
	}
	resolved, err = filepath.EvalSymlinks(ds.Path)
	if err != nil {
		return "", err
	}
	if why := api.SystemPath(resolved); why != "" {
		return "", api.Errorf(api.ErrInvalid, "datastore path %s resolves to %s: refused, %s", ds.Path, resolved, why)
	}
	if data, err := filepath.EvalSymlinks(a.cfg.DataDir); err == nil && api.PathsOverlap(data, resolved) {
		return "", api.Errorf(api.ErrInvalid, "datastore path %s (%s) overlaps this host's data directory %s: refused", ds.Path, resolved, data)
	}
	return resolved, nil
}

// usableRoots lists the datastores this host may use: ID, path as
// configured, and path resolved.
func (a *Agent) usableRoots() []usableRoot {
	a.mu.Lock()
	dss := a.datastores
	a.mu.Unlock()
	out := make([]usableRoot, 0, len(dss))
	for _, ds := range dss {
		if r, err := a.datastoreRoot(ds); err == nil {
			out = append(out, usableRoot{id: ds.ID, path: filepath.Clean(ds.Path), resolved: r})
		}
	}
	return out
}

type usableRoot struct{ id, path, resolved string }

// errNotInDatastore is the one answer for a path that is not a file in a
// datastore of this host: whether it exists and what it is elsewhere is
// nobody's business.
func (a *Agent) errNotInDatastore(what, p string) error {
	return api.Errorf(api.ErrInvalid, "%s %s is not a file in a datastore of host %s", what, p, a.cfg.Name)
}

// resolveIn resolves a path the way the kernel will when it is opened or
// made: every part that exists, symlinks followed; the parts that do not
// exist yet (a new VM's folder and disk) as they are. A dangling symlink
// is refused, since making the file would make its target.
func resolveIn(p string) (string, error) {
	rest := ""
	for q := p; ; q = filepath.Dir(q) {
		r, err := filepath.EvalSymlinks(q)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		if _, lerr := os.Lstat(q); lerr == nil {
			return "", fmt.Errorf("%s is a dangling symlink", q)
		}
		if q == "/" {
			return "", err
		}
		rest = filepath.Join(filepath.Base(q), rest)
	}
}

// inDatastore checks that a path is inside a datastore this host may use,
// as written and as resolved, for a file the host is to write or remove
// (the last part is not followed: removing a symlink removes the link).
func (a *Agent) inDatastore(p string) error {
	_, err := a.checkPath("file", p, false)
	return err
}

// readableFile checks that a path is a regular file in a datastore this
// host may use, symlinks (the last part too) resolved, and returns the
// resolved path, to open that and nothing else.
func (a *Agent) readableFile(what, p string) (string, error) {
	return a.checkPath(what, p, true)
}

func (a *Agent) checkPath(what, p string, read bool) (string, error) {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", api.Errorf(api.ErrInvalid, "bad %s path %q", what, p)
	}
	roots := a.usableRoots()
	inside := func(path string, resolved bool) bool {
		for _, r := range roots {
			root := r.path
			if resolved {
				root = r.resolved
			}
			if path != root && api.PathWithin(root, path) {
				return true
			}
		}
		return false
	}
	// A file to write must be in a datastore as written, and as resolved;
	// a file to read, as resolved (a symlink into a datastore is fine: an
	// ISO an older version attached from elsewhere can be moved into one).
	if !read && !inside(p, false) {
		return "", a.errNotInDatastore(what, p)
	}
	var resolved string
	var err error
	if read {
		resolved, err = filepath.EvalSymlinks(p)
	} else {
		var dir string
		if dir, err = resolveIn(filepath.Dir(p)); err == nil {
			resolved = filepath.Join(dir, filepath.Base(p))
		}
	}
	if err != nil || !inside(resolved, true) {
		return "", a.errNotInDatastore(what, p)
	}
	if read {
		if fi, err := os.Stat(resolved); err != nil || !fi.Mode().IsRegular() {
			return "", a.errNotInDatastore(what, p)
		}
	}
	return resolved, nil
}

// checkVMFiles checks the host paths of a VM's definition before any is
// opened or made: its disks' files, a new disk's source image, the ISO
// and the kernel it boots. A disk that exists already keeps its source
// (a linked disk's base, opened through the disk's own header).
func (a *Agent) checkVMFiles(cfg hypervisor.VMConfig) error {
	for _, d := range cfg.Disks {
		if err := a.inDatastore(d.Path); err != nil {
			return fmt.Errorf("disk %s: %w", d.Name, err)
		}
		if d.Source == "" {
			continue
		}
		if _, err := os.Lstat(d.Path); err == nil {
			continue
		}
		if err := a.datastoreFile("image", d.Source); err != nil {
			return fmt.Errorf("disk %s: %w", d.Name, err)
		}
	}
	files := map[string]string{"cdrom": cfg.CDROM}
	if cfg.Boot != nil {
		files["kernel"], files["initrd"] = cfg.Boot.Kernel, cfg.Boot.Initrd
	}
	for what, p := range files {
		if p == "" {
			continue
		}
		if err := a.datastoreFile(what, p); err != nil {
			return err
		}
	}
	return nil
}

// datastoreFile checks a file the driver is to read: in a datastore (its
// folder resolved), and if it is there, a regular file there, symlinks
// resolved. One that is missing is the driver's to report (the sim
// driver models files it never writes): its folder is in a datastore, so
// that says nothing of what lies outside.
func (a *Agent) datastoreFile(what, p string) error {
	var err error
	if _, lerr := os.Lstat(p); lerr == nil {
		_, err = a.readableFile(what, p)
	} else {
		_, err = a.checkPath(what, p, false)
	}
	return err
}

// isURL says whether an image source is fetched rather than read.
func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}
