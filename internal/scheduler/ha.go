package scheduler

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
)

// HAVM is a powered-on VM as HA sees it.
type HAVM struct {
	ID, Name string
	// Host is the ID of the host the VM runs on.
	Host        string
	CPUs        int
	MemoryBytes int64
	// Priority: api.HAPriorityHigh, Medium, Low or Disabled.
	Priority   string
	Datastores []string
}

// Protected reports whether HA restarts the VM.
func (v HAVM) Protected() bool { return v.Priority != api.HAPriorityDisabled }

func priorityRank(p string) int {
	switch p {
	case api.HAPriorityHigh:
		return 0
	case api.HAPriorityLow:
		return 2
	case api.HAPriorityDisabled:
		return 3
	}
	return 1
}

// Placement is one VM of a restart plan and the host it goes to.
type Placement struct {
	VM   HAVM
	Host Host
}

// Unplaced is a VM of a restart plan that fits nowhere, and why.
type Unplaced struct {
	VM  HAVM
	Err error
}

// Ratios are a cluster's overcommit ratios.
type Ratios struct{ CPU, Memory float64 }

// RestartOrder sorts VMs the way HA restarts them: by priority, the
// biggest first within one (they are the hardest to fit), then by name.
func RestartOrder(vms []HAVM) {
	sort.SliceStable(vms, func(i, j int) bool {
		a, b := vms[i], vms[j]
		if ra, rb := priorityRank(a.Priority), priorityRank(b.Priority); ra != rb {
			return ra < rb
		}
		if a.MemoryBytes != b.MemoryBytes {
			return a.MemoryBytes > b.MemoryBytes
		}
		if a.CPUs != b.CPUs {
			return a.CPUs > b.CPUs
		}
		return a.Name < b.Name
	})
}

// PlanRestarts places the protected VMs among vms on the hosts that can
// run them (connected, not in maintenance, with room), in restart order,
// each on the least loaded host at its turn. Hosts is not changed.
// Disabled VMs are left out of both answers.
func PlanRestarts(hosts []Host, vms []HAVM, r Ratios) ([]Placement, []Unplaced) {
	hs := make([]Host, len(hosts))
	copy(hs, hosts)
	order := make([]HAVM, 0, len(vms))
	for _, v := range vms {
		if v.Protected() {
			order = append(order, v)
		}
	}
	RestartOrder(order)
	var placed []Placement
	var unplaced []Unplaced
	for _, v := range order {
		req := Request{CPUs: v.CPUs, MemoryBytes: v.MemoryBytes, Datastores: v.Datastores, CPUOvercommit: r.CPU, MemoryOvercommit: r.Memory}
		h, err := Place(hs, req)
		if err != nil {
			unplaced = append(unplaced, Unplaced{VM: v, Err: err})
			continue
		}
		for i := range hs {
			if hs[i].ID == h.ID {
				hs[i].OnCPUs += v.CPUs
				hs[i].OnMemory += v.MemoryBytes
				hs[i].AllocCPUs += v.CPUs
				hs[i].AllocMemory += v.MemoryBytes
				h = hs[i]
			}
		}
		placed = append(placed, Placement{VM: v, Host: h})
	}
	return placed, unplaced
}

// Admission is a cluster's HA admission control.
type Admission struct {
	api.HAAdmission
	Ratios Ratios
}

// maxFailureSets bounds how many sets of failed hosts Admit tries; past
// it, the sets that hold the most protected memory are tried.
const maxFailureSets = 256

// Admit checks that the cluster still tolerates its configured failures
// once cand (a VM about to power on, on host cand.Host) runs too. Hosts
// carry their current load, without cand; vms are the cluster's other
// powered-on VMs. The error says what would be left without room.
func Admit(hosts []Host, vms []HAVM, cand HAVM, a Admission) error {
	hs := make([]Host, len(hosts))
	copy(hs, hosts)
	for i := range hs {
		if hs[i].ID == cand.Host {
			hs[i].OnCPUs += cand.CPUs
			hs[i].OnMemory += cand.MemoryBytes
			hs[i].AllocCPUs += cand.CPUs
			hs[i].AllocMemory += cand.MemoryBytes
		}
	}
	all := append(append([]HAVM(nil), vms...), cand)
	switch a.Policy {
	case api.AdmissionPercentage:
		return admitPercentage(hs, a)
	case api.AdmissionHostFailures:
		return admitHostFailures(hs, all, a)
	}
	return nil
}

func usable(h Host) bool { return h.Connected && !h.Maintenance }

func admitPercentage(hs []Host, a Admission) error {
	cr, mr := Request{CPUOvercommit: a.Ratios.CPU, MemoryOvercommit: a.Ratios.Memory}.ratios()
	var capCPU, capMem float64
	var onCPU, onMem float64
	for _, h := range hs {
		if !usable(h) {
			continue
		}
		capCPU += float64(h.CPUs) * cr
		capMem += float64(h.MemoryBytes) * mr
		onCPU += float64(h.OnCPUs)
		onMem += float64(h.OnMemory)
	}
	limCPU := capCPU * float64(100-a.CPUPercent) / 100
	limMem := capMem * float64(100-a.MemoryPercent) / 100
	if onCPU > limCPU || onMem > limMem {
		return fmt.Errorf("HA admission control keeps %d%% of the cluster's CPU and %d%% of its memory free for restarts: "+
			"powered-on VMs would use %.0f of %.0f vCPUs and %s of %s", a.CPUPercent, a.MemoryPercent,
			onCPU, capCPU, api.Size(int64(onMem)), api.Size(int64(capMem)))
	}
	return nil
}

// admitHostFailures fails every set of N usable hosts in turn (or the
// heaviest ones, when there are too many sets) and checks that the
// protected VMs of each set can restart on the hosts left.
func admitHostFailures(hs []Host, vms []HAVM, a Admission) error {
	n := a.HostFailures
	if n <= 0 {
		n = api.DefaultHAAdmissionHostFailure
	}
	var up []int
	for i, h := range hs {
		if usable(h) {
			up = append(up, i)
		}
	}
	if len(up) <= n {
		return fmt.Errorf("HA admission control must tolerate %d host failures, and the cluster has only %d usable hosts", n, len(up))
	}
	byHost := map[string][]HAVM{}
	for _, v := range vms {
		if v.Protected() {
			byHost[v.Host] = append(byHost[v.Host], v)
		}
	}
	for _, set := range failureSets(hs, up, n, byHost) {
		trial := make([]Host, len(hs))
		copy(trial, hs)
		var lost []HAVM
		var names []string
		for _, i := range set {
			trial[i].Connected = false
			lost = append(lost, byHost[trial[i].ID]...)
			names = append(names, trial[i].Name)
		}
		if _, unplaced := PlanRestarts(trial, lost, a.Ratios); len(unplaced) > 0 {
			var vmNames []string
			for _, u := range unplaced {
				vmNames = append(vmNames, u.VM.Name)
			}
			return fmt.Errorf("HA admission control must tolerate %d host failure(s): if %s failed, %s could not restart (%v)",
				n, strings.Join(names, " and "), strings.Join(firstNames(vmNames, 5), ", "), unplaced[0].Err)
		}
	}
	return nil
}

func firstNames(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("%d more", len(s)-n))
	}
	return s
}

// failureSets lists the sets of n hosts (indexes into hs) to fail: all of
// them when there are few, else the ones that carry the most protected
// memory.
func failureSets(hs []Host, up []int, n int, byHost map[string][]HAVM) [][]int {
	if combinations(len(up), n) <= maxFailureSets {
		var out [][]int
		var rec func(start int, cur []int)
		rec = func(start int, cur []int) {
			if len(cur) == n {
				out = append(out, append([]int(nil), cur...))
				return
			}
			for i := start; i < len(up); i++ {
				rec(i+1, append(cur, up[i]))
			}
		}
		rec(0, nil)
		return out
	}
	load := func(i int) int64 {
		var m int64
		for _, v := range byHost[hs[i].ID] {
			m += v.MemoryBytes
		}
		return m
	}
	heavy := append([]int(nil), up...)
	sort.SliceStable(heavy, func(a, b int) bool { return load(heavy[a]) > load(heavy[b]) })
	// The n heaviest, and each of them swapped for each of the next ones.
	var out [][]int
	out = append(out, heavy[:n])
	for k := 0; k < n && len(out) < maxFailureSets; k++ {
		for j := n; j < len(heavy) && len(out) < maxFailureSets; j++ {
			set := append([]int(nil), heavy[:n]...)
			set[k] = heavy[j]
			out = append(out, set)
		}
	}
	return out
}

func combinations(n, k int) int {
	c := 1
	for i := 0; i < k; i++ {
		c = c * (n - i) / (i + 1)
		if c > maxFailureSets {
			return c
		}
	}
	return c
}
