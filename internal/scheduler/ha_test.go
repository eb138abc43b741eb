package scheduler

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

var priorities = []string{api.HAPriorityHigh, api.HAPriorityMedium, api.HAPriorityLow, api.HAPriorityDisabled}

// randomCluster makes 2-8 hosts, some down or in maintenance, and up to
// 40 powered-on VMs on the usable ones, never past a host's room.
func randomCluster(rng *rand.Rand) ([]Host, []HAVM, Ratios) {
	r := Ratios{CPU: []float64{1, 2, 4}[rng.IntN(3)], Memory: []float64{1, 1.5}[rng.IntN(2)]}
	hosts := make([]Host, 2+rng.IntN(7))
	for i := range hosts {
		hosts[i] = Host{ID: fmt.Sprintf("h%d", i), Name: fmt.Sprintf("host-%d", i), Connected: rng.IntN(8) != 0,
			Maintenance: rng.IntN(10) == 0, CPUs: 4 + 4*rng.IntN(4), MemoryBytes: int64(8+8*rng.IntN(4)) * gib,
			Datastores: map[string]bool{"shared": true, "local" + fmt.Sprint(i): true}}
	}
	var vms []HAVM
	for i := 0; i < rng.IntN(41); i++ {
		v := HAVM{ID: fmt.Sprintf("v%d", i), Name: fmt.Sprintf("vm-%02d", i), CPUs: 1 + rng.IntN(4),
			MemoryBytes: int64(1+rng.IntN(8)) * gib / 2, Priority: priorities[rng.IntN(4)], Datastores: []string{"shared"}}
		h := &hosts[rng.IntN(len(hosts))]
		if !usable(*h) {
			continue
		}
		if ok, _ := Fits(*h, Request{CPUs: v.CPUs, MemoryBytes: v.MemoryBytes, CPUOvercommit: r.CPU, MemoryOvercommit: r.Memory}); !ok {
			continue
		}
		v.Host = h.ID
		h.OnCPUs += v.CPUs
		h.OnMemory += v.MemoryBytes
		h.AllocCPUs += v.CPUs
		h.AllocMemory += v.MemoryBytes
		vms = append(vms, v)
	}
	return hosts, vms, r
}

// fail marks one usable host failed and returns the hosts and the VMs
// that were on it.
func fail(hosts []Host, vms []HAVM, i int) ([]Host, []HAVM) {
	hs := append([]Host(nil), hosts...)
	hs[i].Connected = false
	var lost []HAVM
	for _, v := range vms {
		if v.Host == hs[i].ID {
			lost = append(lost, v)
		}
	}
	return hs, lost
}

func TestPlanRestartsProperties(t *testing.T) {
	for seed := uint64(0); seed < 2000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		hosts, vms, r := randomCluster(rng)
		victim := rng.IntN(len(hosts))
		hs, lost := fail(hosts, vms, victim)
		placed, unplaced := PlanRestarts(hs, lost, r)

		protected := 0
		for _, v := range lost {
			if v.Protected() {
				protected++
			}
		}
		if len(placed)+len(unplaced) != protected {
			t.Fatalf("seed %d: %d placed + %d unplaced, %d protected VMs were lost", seed, len(placed), len(unplaced), protected)
		}
		// Replay the plan: no host past its room, only usable hosts that
		// reach the VM's datastores, priorities in order.
		state := map[string]*Host{}
		for i := range hs {
			state[hs[i].ID] = &hs[i]
		}
		last := -1
		for _, p := range placed {
			h := state[p.Host.ID]
			if !h.Connected || h.Maintenance || h.ID == hosts[victim].ID {
				t.Fatalf("seed %d: %s placed on unusable host %s", seed, p.VM.Name, h.Name)
			}
			req := Request{CPUs: p.VM.CPUs, MemoryBytes: p.VM.MemoryBytes, Datastores: p.VM.Datastores, CPUOvercommit: r.CPU, MemoryOvercommit: r.Memory}
			if ok, why := Fits(*h, req); !ok {
				t.Fatalf("seed %d: %s placed on %s, which is %s", seed, p.VM.Name, h.Name, why)
			}
			h.OnCPUs += p.VM.CPUs
			h.OnMemory += p.VM.MemoryBytes
			if rk := priorityRank(p.VM.Priority); rk < last {
				t.Fatalf("seed %d: %s (%s) restarted after a lower priority", seed, p.VM.Name, p.VM.Priority)
			} else {
				last = rk
			}
			if !p.VM.Protected() {
				t.Fatalf("seed %d: disabled VM %s restarted", seed, p.VM.Name)
			}
		}
		// A VM left out fits nowhere, even after the plan.
		for _, u := range unplaced {
			req := Request{CPUs: u.VM.CPUs, MemoryBytes: u.VM.MemoryBytes, Datastores: u.VM.Datastores, CPUOvercommit: r.CPU, MemoryOvercommit: r.Memory}
			for _, h := range state {
				if ok, _ := Fits(*h, req); ok {
					t.Fatalf("seed %d: %s left out though %s has room", seed, u.VM.Name, h.Name)
				}
			}
		}
	}
}

// Whatever admission control with "tolerate one host failure" admits,
// the failure of any one host leaves room to restart every protected VM.
func TestAdmittedClusterToleratesAnyHostFailure(t *testing.T) {
	admitted, refused := 0, 0
	for seed := uint64(0); seed < 1500; seed++ {
		rng := rand.New(rand.NewPCG(seed, 11))
		hosts, _, r := randomCluster(rng)
		a := Admission{HAAdmission: api.HAAdmission{Policy: api.AdmissionHostFailures, HostFailures: 1}, Ratios: r}
		// Power on VMs one by one through admission control.
		var vms []HAVM
		for i := 0; i < 40; i++ {
			cand := HAVM{ID: fmt.Sprintf("v%d", i), Name: fmt.Sprintf("vm-%02d", i), CPUs: 1 + rng.IntN(4),
				MemoryBytes: int64(1+rng.IntN(8)) * gib / 2, Priority: priorities[rng.IntN(4)], Datastores: []string{"shared"}}
			req := Request{CPUs: cand.CPUs, MemoryBytes: cand.MemoryBytes, Datastores: cand.Datastores, CPUOvercommit: r.CPU, MemoryOvercommit: r.Memory}
			h, err := Place(hosts, req)
			if err != nil {
				continue
			}
			cand.Host = h.ID
			if err := Admit(hosts, vms, cand, a); err != nil {
				refused++
				if !strings.Contains(err.Error(), "could not restart") && !strings.Contains(err.Error(), "usable hosts") {
					t.Fatalf("seed %d: refusal does not say why: %v", seed, err)
				}
				continue
			}
			admitted++
			for j := range hosts {
				if hosts[j].ID == h.ID {
					hosts[j].OnCPUs += cand.CPUs
					hosts[j].OnMemory += cand.MemoryBytes
					hosts[j].AllocCPUs += cand.CPUs
					hosts[j].AllocMemory += cand.MemoryBytes
				}
			}
			vms = append(vms, cand)
		}
		for i := range hosts {
			if !usable(hosts[i]) {
				continue
			}
			hs, lost := fail(hosts, vms, i)
			if _, unplaced := PlanRestarts(hs, lost, r); len(unplaced) > 0 {
				t.Fatalf("seed %d: admitted, yet if %s fails %s cannot restart: %v", seed, hosts[i].Name, unplaced[0].VM.Name, unplaced[0].Err)
			}
		}
	}
	if admitted == 0 || refused == 0 {
		t.Fatalf("the random clusters never exercised both answers: %d admitted, %d refused", admitted, refused)
	}
}

func TestAdmitPercentage(t *testing.T) {
	hosts := []Host{
		{ID: "a", Name: "a", Connected: true, CPUs: 4, MemoryBytes: 10 * gib},
		{ID: "b", Name: "b", Connected: true, CPUs: 4, MemoryBytes: 10 * gib, OnMemory: 6 * gib, OnCPUs: 1},
		{ID: "c", Name: "c", Connected: false, CPUs: 4, MemoryBytes: 10 * gib},
	}
	a := Admission{HAAdmission: api.HAAdmission{Policy: api.AdmissionPercentage, CPUPercent: 25, MemoryPercent: 50}, Ratios: Ratios{CPU: 1, Memory: 1}}
	// Usable: 20 GiB, half reserved: 10 GiB for VMs, 6 used.
	if err := Admit(hosts, nil, HAVM{Host: "a", CPUs: 1, MemoryBytes: 4 * gib}, a); err != nil {
		t.Fatalf("4 GiB fits in the 10 GiB not reserved: %v", err)
	}
	err := Admit(hosts, nil, HAVM{Host: "a", CPUs: 1, MemoryBytes: 5 * gib}, a)
	if err == nil || !strings.Contains(err.Error(), "50% of its memory") {
		t.Fatalf("5 GiB past the reserve: %v", err)
	}
	if err := Admit(hosts, nil, HAVM{Host: "a", CPUs: 6, MemoryBytes: gib}, a); err == nil {
		t.Fatal("7 of 8 vCPUs with 25% reserved was admitted")
	}
	a.Policy = api.AdmissionOff
	if err := Admit(hosts, nil, HAVM{Host: "a", CPUs: 6, MemoryBytes: 5 * gib}, a); err != nil {
		t.Fatalf("admission control off refused: %v", err)
	}
}

func TestAdmitNeedsMoreHostsThanFailures(t *testing.T) {
	hosts := []Host{{ID: "a", Name: "a", Connected: true, CPUs: 4, MemoryBytes: 10 * gib}}
	a := Admission{HAAdmission: api.HAAdmission{Policy: api.AdmissionHostFailures, HostFailures: 1}}
	if err := Admit(hosts, nil, HAVM{Host: "a", CPUs: 1, MemoryBytes: gib}, a); err == nil || !strings.Contains(err.Error(), "only 1 usable") {
		t.Fatalf("one host cannot tolerate a failure: %v", err)
	}
}

func TestRestartOrder(t *testing.T) {
	vms := []HAVM{
		{Name: "low", Priority: api.HAPriorityLow, MemoryBytes: 8 * gib},
		{Name: "med-small", Priority: "", MemoryBytes: gib},
		{Name: "high", Priority: api.HAPriorityHigh, MemoryBytes: gib},
		{Name: "med-big", Priority: api.HAPriorityMedium, MemoryBytes: 4 * gib},
	}
	RestartOrder(vms)
	var got []string
	for _, v := range vms {
		got = append(got, v.Name)
	}
	if want := "high med-big med-small low"; strings.Join(got, " ") != want {
		t.Fatalf("order %v, want %s", got, want)
	}
}

func BenchmarkAdmitHostFailures50Hosts1000VMs(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := make([]Host, 50)
	for i := range hosts {
		hosts[i] = Host{ID: fmt.Sprint(i), Name: fmt.Sprint("h", i), Connected: true, CPUs: 64, MemoryBytes: 256 * gib}
	}
	var vms []HAVM
	for i := 0; i < 1000; i++ {
		h := &hosts[i%50]
		v := HAVM{ID: fmt.Sprint(i), Name: fmt.Sprint("v", i), Host: h.ID, CPUs: 1 + rng.IntN(2), MemoryBytes: gib * int64(1+rng.IntN(4))}
		h.OnCPUs += v.CPUs
		h.OnMemory += v.MemoryBytes
		vms = append(vms, v)
	}
	a := Admission{HAAdmission: api.HAAdmission{Policy: api.AdmissionHostFailures, HostFailures: 1}, Ratios: Ratios{CPU: 4, Memory: 1}}
	cand := HAVM{Host: "0", CPUs: 1, MemoryBytes: gib}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := Admit(hosts, vms, cand, a); err != nil {
			b.Fatal(err)
		}
	}
}
