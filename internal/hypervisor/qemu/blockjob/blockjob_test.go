package blockjob

import "testing"

// The node of a disk file is named from its file name, in the characters
// QEMU accepts in a node name.
func TestNodeName(t *testing.T) {
	for path, want := range map[string]string{
		"/ds/vm1/disk0-1.qcow2":    "n-disk0-1",
		"/ds/vm1/my disk.v2.qcow2": "n-my-disk-v2",
		"/ds/vm1/ünï_code.qcow2":   "n--n-_code",
	} {
		if got := NodeName(path); got != want {
			t.Errorf("NodeName(%q) = %q, want %q", path, got, want)
		}
	}
}
