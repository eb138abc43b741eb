package hotadd

import (
	"testing"

	"github.com/vdc-project/vdc/api"
)

// What a hot-add says it added, in the words of its result.
func TestDescribeAdded(t *testing.T) {
	for _, c := range []struct {
		cpus int
		mem  int64
		want string
	}{
		{1, 0, "1 vCPU"},
		{2, 256 << 20, "2 vCPUs and 256 MiB of memory"},
		{0, 1 << 30, "1 GiB of memory"},
	} {
		if got := describeAdded(c.cpus, c.mem); got != c.want {
			t.Errorf("describeAdded(%d, %s) = %q, want %q", c.cpus, api.Size(c.mem), got, c.want)
		}
	}
}

// Hot-added vCPUs and DIMMs are ordered by the number their ID ends with
// (cpu10 after cpu9), which is their place in the VM's hardware.
func TestSuffixNum(t *testing.T) {
	for id, want := range map[string]int{"cpu3": 3, "cpu10": 10, "dimm0": 0, "cpu": -1} {
		if got := suffixNum(id); got != want {
			t.Errorf("suffixNum(%q) = %d, want %d", id, got, want)
		}
	}
}
