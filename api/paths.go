package api

import (
	"path/filepath"
	"slices"
	"strings"
)

// Datastores are directories hosts read and write as root: a datastore
// at / or /etc would let whoever may create one have VM disks, imports
// and deletes reach system files. These rules are checked by the server
// when a datastore is made and again by each host, on the path with its
// symlinks resolved, before it uses one.

// systemTrees are the top-level directories nothing of a datastore may
// be in: the operating system's own files and the kernel's views.
var systemTrees = []string{"bin", "boot", "dev", "etc", "proc", "sbin", "sys", "usr"}

// systemTops are top-level directories that may hold datastores
// (/var/lib/vdc, a temporary directory under /tmp, /home/lab/ds) but are
// not one themselves: they hold the system's and users' other files.
// /mnt, /media and /srv may be datastores: a data disk or an NFS export
// is often mounted right there.
var systemTops = []string{"home", "opt", "root", "run", "tmp", "var"}

// SystemPath says why a clean absolute path is no place for a datastore
// ("" when it is fine): the root, a top-level directory of the system
// itself, or anything in /etc, /usr, /bin, /sbin, /lib*, /boot, /dev,
// /proc or /sys.
func SystemPath(p string) string {
	if p == "/" {
		return "it is the root directory"
	}
	top, rest, _ := strings.Cut(strings.TrimPrefix(p, "/"), "/")
	if strings.HasPrefix(top, "lib") || slices.Contains(systemTrees, top) {
		if rest == "" {
			return "it is a system directory"
		}
		return "it is inside the system directory /" + top
	}
	if rest == "" && slices.Contains(systemTops, top) {
		return "it is a system directory itself (a datastore may be a directory inside it)"
	}
	return ""
}

// ValidateDatastorePath checks a datastore's path as given: absolute,
// clean (no "..", no trailing "/"), plain text, and no system directory.
func ValidateDatastorePath(p string) error {
	if p == "" || !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return Errorf(ErrInvalid, "datastore path must be a clean absolute path, got %q", p)
	}
	if err := ValidateText("datastore path", p); err != nil {
		return err
	}
	if why := SystemPath(p); why != "" {
		return Errorf(ErrInvalid, "datastore path %s is refused: %s; give a directory of its own, such as /var/lib/vdc/datastore1 or /srv/vdc/datastore1", p, why)
	}
	return nil
}

// PathWithin reports whether the clean absolute path p is root or inside it.
func PathWithin(root, p string) bool {
	return p == root || root == "/" || strings.HasPrefix(p, root+"/")
}

// PathsOverlap reports whether one of two clean absolute paths is the
// other or inside it: two such datastores would hold each other's files.
func PathsOverlap(a, b string) bool {
	return PathWithin(a, b) || PathWithin(b, a)
}
