package api

import (
	"errors"
	"testing"
)

func TestDatastorePaths(t *testing.T) {
	for _, ok := range []string{"/tmp/xyz/datastore1", "/var/lib/vdc/datastore1", "/srv/vdc", "/mnt/nfs", "/mnt", "/srv", "/data", "/home/alice/ds", "/root/vdc-data/datastore1", "/run/media/disk", "/opt/vdc/ds"} {
		if err := ValidateDatastorePath(ok); err != nil {
			t.Errorf("ValidateDatastorePath(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"/", "/etc", "/etc/vdc", "/usr/local/ds", "/bin", "/sbin/x", "/lib", "/lib64/x", "/lib32", "/boot/x", "/dev/shm/ds", "/proc/1", "/sys/x",
		"/var", "/tmp", "/home", "/root", "/run", "/opt", "relative", "/tmp/../etc", "/tmp/x/", "", "/tmp/\u001b[2J"} {
		if err := ValidateDatastorePath(bad); err == nil || !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateDatastorePath(%q) = %v; want ErrInvalid", bad, err)
		}
	}
	overlap := [][2]string{{"/a/b", "/a/b"}, {"/a", "/a/b"}, {"/a/b/c", "/a/b"}}
	for _, p := range overlap {
		if !PathsOverlap(p[0], p[1]) {
			t.Errorf("%s and %s overlap", p[0], p[1])
		}
	}
	for _, p := range [][2]string{{"/a/b", "/a/bc"}, {"/a/b", "/a/c"}} {
		if PathsOverlap(p[0], p[1]) {
			t.Errorf("%s and %s do not overlap", p[0], p[1])
		}
	}
}
