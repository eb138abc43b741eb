package scheduler

import (
	"errors"
	"math/rand"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

const gib = int64(1 << 30)

func host(name string, cpus int, memGiB int64) Host {
	return Host{ID: name, Name: name, Connected: true, CPUs: cpus, MemoryBytes: memGiB * gib, Datastores: map[string]bool{"ds1": true}}
}

func TestPlaceSkipsUnusableHosts(t *testing.T) {
	down := host("a", 64, 64)
	down.Connected = false
	maint := host("b", 64, 64)
	maint.Maintenance = true
	blind := host("c", 64, 64)
	blind.Datastores = nil
	ok := host("d", 2, 2)
	h, err := Place([]Host{down, maint, blind, ok}, Request{CPUs: 1, MemoryBytes: gib, Datastores: []string{"ds1"}})
	if err != nil || h.Name != "d" {
		t.Fatalf("want d, got %q, %v", h.Name, err)
	}
}

func TestPlaceSpreads(t *testing.T) {
	hosts := []Host{host("a", 8, 16), host("b", 8, 16), host("c", 8, 16)}
	counts := map[string]int{}
	for i := 0; i < 30; i++ {
		h, err := Place(hosts, Request{CPUs: 1, MemoryBytes: gib / 2})
		if err != nil {
			t.Fatal(err)
		}
		counts[h.Name]++
		for j := range hosts {
			if hosts[j].Name == h.Name {
				hosts[j].AllocCPUs++
				hosts[j].AllocMemory += gib / 2
			}
		}
	}
	for _, n := range []string{"a", "b", "c"} {
		if counts[n] != 10 {
			t.Fatalf("30 equal VMs on 3 equal hosts should spread 10/10/10, got %v", counts)
		}
	}
}

func TestOvercommitRatios(t *testing.T) {
	h := host("a", 2, 4)
	h.OnCPUs = 8 // 2 CPUs × 4.0 = 8: full
	if ok, _ := Fits(h, Request{CPUs: 1, MemoryBytes: 1}); ok {
		t.Fatal("a host at 4:1 vCPU overcommit took another vCPU")
	}
	if ok, _ := Fits(h, Request{CPUs: 1, MemoryBytes: 1, CPUOvercommit: 5}); !ok {
		t.Fatal("with ratio 5 the host has room for 2 more vCPUs")
	}
	h.OnCPUs = 0
	h.OnMemory = 3 * gib
	if ok, _ := Fits(h, Request{CPUs: 1, MemoryBytes: 2 * gib}); ok {
		t.Fatal("memory is not overcommitted by default")
	}
	if ok, _ := Fits(h, Request{CPUs: 1, MemoryBytes: 2 * gib, MemoryOvercommit: 1.5}); !ok {
		t.Fatal("with memory ratio 1.5, 4 GiB hold 6 GiB")
	}
}

func TestNoRoomNamesNeedAndBestHost(t *testing.T) {
	a := host("a", 4, 4)
	a.OnMemory = 3 * gib
	b := host("b", 4, 4)
	b.OnMemory = 3*gib + gib/2
	down := host("c", 64, 64)
	down.Connected = false
	_, err := Place([]Host{a, b, down}, Request{CPUs: 2, MemoryBytes: 2 * gib})
	var nr *NoRoomError
	if !errors.As(err, &nr) || !errors.Is(err, api.ErrUnprocessable) {
		t.Fatalf("want a NoRoomError that is ErrUnprocessable, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{"2 vCPU", "2 GiB", "the best, a, has", "1 GiB free", "1 host disconnected"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	_, err = Place(nil, Request{CPUs: 1, MemoryBytes: gib})
	if err == nil || !strings.Contains(err.Error(), "no hosts") {
		t.Fatalf("empty cluster: %v", err)
	}
}

// Whatever the cluster, a chosen host fits, and a refusal means none fits.
func TestPlaceRandomized(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for iter := 0; iter < 2000; iter++ {
		var hosts []Host
		for i := 0; i < 1+r.Intn(8); i++ {
			h := host(string(rune('a'+i)), 1+r.Intn(32), 1+int64(r.Intn(64)))
			h.Connected = r.Intn(5) > 0
			h.Maintenance = r.Intn(6) == 0
			h.OnCPUs = r.Intn(64)
			h.OnMemory = int64(r.Intn(64)) * gib
			h.AllocCPUs = h.OnCPUs + r.Intn(16)
			h.AllocMemory = h.OnMemory + int64(r.Intn(16))*gib
			hosts = append(hosts, h)
		}
		req := Request{CPUs: 1 + r.Intn(8), MemoryBytes: (1 + int64(r.Intn(8))) * gib / 2}
		got, err := Place(hosts, req)
		anyFits := false
		for _, h := range hosts {
			if ok, _ := Fits(h, req); ok {
				anyFits = true
			}
		}
		if err != nil {
			if anyFits {
				t.Fatalf("iter %d: refused although a host fits: %v", iter, err)
			}
			continue
		}
		if ok, why := Fits(got, req); !ok {
			t.Fatalf("iter %d: chose %s that does not fit: %s", iter, got.Name, why)
		}
	}
}

// BenchmarkPlace100Hosts is one placement decision in a 100-host cluster.
func BenchmarkPlace100Hosts(b *testing.B) {
	var hosts []Host
	for i := 0; i < 100; i++ {
		h := host(string(rune('a'+i%26))+string(rune('a'+i/26)), 64, 256)
		h.AllocCPUs, h.AllocMemory = i%17, int64(i%13)*gib
		hosts = append(hosts, h)
	}
	req := Request{CPUs: 2, MemoryBytes: gib, Datastores: []string{"ds1"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Place(hosts, req); err != nil {
			b.Fatal(err)
		}
	}
}
