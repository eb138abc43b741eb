package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
)

// Host is what placement needs to know about one host.
type Host struct {
	ID, Name    string
	Connected   bool
	Maintenance bool
	CPUs        int
	MemoryBytes int64
	// OnCPUs and OnMemory are the vCPUs and memory of the host's powered-on
	// VMs (and of power-ons already decided but not yet recorded).
	OnCPUs   int
	OnMemory int64
	// AllocCPUs and AllocMemory count every VM registered on the host,
	// running or not; placement spreads by them.
	AllocCPUs   int
	AllocMemory int64
	// Datastores the host reaches, by ID.
	Datastores map[string]bool
}

// Request is what a VM needs.
type Request struct {
	CPUs        int
	MemoryBytes int64
	// Datastores the VM's disks are on; the host must reach all of them.
	Datastores []string
	// Overcommit ratios of the cluster (0 means the default).
	CPUOvercommit, MemoryOvercommit float64
}

func (r Request) ratios() (float64, float64) {
	c, m := r.CPUOvercommit, r.MemoryOvercommit
	if c <= 0 {
		c = api.DefaultCPUOvercommit
	}
	if m <= 0 {
		m = api.DefaultMemoryOvercommit
	}
	return c, m
}

// Room is how many more vCPUs and bytes of memory of powered-on VMs the host
// can take under the overcommit ratios.
func Room(h Host, r Request) (cpus int, mem int64) {
	cr, mr := r.ratios()
	return int(float64(h.CPUs)*cr) - h.OnCPUs, int64(float64(h.MemoryBytes)*mr) - h.OnMemory
}

// Fits reports whether the host can power on the VM, and if not, why.
func Fits(h Host, r Request) (bool, string) {
	switch {
	case !h.Connected:
		return false, "disconnected"
	case h.Maintenance:
		return false, "in maintenance"
	}
	for _, ds := range r.Datastores {
		if !h.Datastores[ds] {
			return false, "cannot reach the datastore"
		}
	}
	cpus, mem := Room(h, r)
	if cpus < r.CPUs || mem < r.MemoryBytes {
		return false, "not enough room"
	}
	return true, ""
}

// NoRoomError says why nothing fits: what was needed, the host that came
// closest, and why the others were left out.
type NoRoomError struct {
	Need     Request
	Best     *Host
	BestCPUs int
	BestMem  int64
	Excluded map[string]int // reason → number of hosts
}

func (e *NoRoomError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "no host has room for %d vCPU and %s of memory", e.Need.CPUs, api.Size(e.Need.MemoryBytes))
	if e.Best != nil {
		fmt.Fprintf(&b, "; the best, %s, has %d vCPU and %s free", e.Best.Name, max(e.BestCPUs, 0), api.Size(max(e.BestMem, 0)))
	}
	if e.Best == nil && len(e.Excluded) == 0 {
		b.WriteString(" (there are no hosts)")
	}
	if len(e.Excluded) > 0 {
		reasons := make([]string, 0, len(e.Excluded))
		for why, n := range e.Excluded {
			host := "hosts"
			if n == 1 {
				host = "host"
			}
			reasons = append(reasons, fmt.Sprintf("%d %s %s", n, host, why))
		}
		sort.Strings(reasons)
		fmt.Fprintf(&b, " (%s)", strings.Join(reasons, ", "))
	}
	return b.String()
}

// Unwrap makes the error an api.ErrUnprocessable: the request is valid, the
// datacenter just cannot satisfy it now.
func (e *NoRoomError) Unwrap() error { return api.ErrUnprocessable }

// Place picks the host for a new VM: among the hosts that fit, the least
// allocated one after adding the VM, so VMs spread. Ties go to the name.
func Place(hosts []Host, r Request) (Host, error) {
	cr, mr := r.ratios()
	var best *Host
	bestScore := 0.0
	for i := range hosts {
		h := &hosts[i]
		if ok, _ := Fits(*h, r); !ok {
			continue
		}
		cpuFrac := float64(h.AllocCPUs+r.CPUs) / (float64(h.CPUs) * cr)
		memFrac := float64(h.AllocMemory+r.MemoryBytes) / (float64(h.MemoryBytes) * mr)
		score := max(cpuFrac, memFrac)
		if best == nil || score < bestScore || score == bestScore && h.Name < best.Name {
			best, bestScore = h, score
		}
	}
	if best != nil {
		return *best, nil
	}
	return Host{}, explain(hosts, r)
}

// explain builds the NoRoomError for a request nothing fits.
func explain(hosts []Host, r Request) error {
	e := &NoRoomError{Need: r, Excluded: map[string]int{}}
	for i := range hosts {
		h := &hosts[i]
		ok, why := Fits(*h, r)
		if ok {
			continue
		}
		if why != "not enough room" {
			e.Excluded[why]++
			continue
		}
		cpus, mem := Room(*h, r)
		// Closest: the host short of the least, as a fraction of the need.
		if e.Best == nil || shortfall(cpus, mem, r) < shortfall(e.BestCPUs, e.BestMem, r) {
			e.Best, e.BestCPUs, e.BestMem = h, cpus, mem
		}
	}
	return e
}

func shortfall(cpus int, mem int64, r Request) float64 {
	s := 0.0
	if r.CPUs > 0 && cpus < r.CPUs {
		s += float64(r.CPUs-cpus) / float64(r.CPUs)
	}
	if r.MemoryBytes > 0 && mem < r.MemoryBytes {
		s += float64(r.MemoryBytes-mem) / float64(r.MemoryBytes)
	}
	return s
}
