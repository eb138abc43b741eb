package storage

import (
	"encoding/json"
	"testing"

	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/hypervisor/qemu/proc"
)

// An interrupted merge is found from its journal in the VM's directory,
// and named with its files and the phase it reached (what the VM's state
// reason and the refusal to start show).
func TestUnfinishedMerge(t *testing.T) {
	dir := t.TempDir()
	if u := UnfinishedMerge(dir); u != "" {
		t.Fatalf("no journal, yet an unfinished merge: %q", u)
	}
	j := mergeJournal{DiskMerge: hypervisor.DiskMerge{Disk: "disk0", Top: "/ds/vm/disk0-2.qcow2", Base: "/ds/vm/disk0-1.qcow2", Active: true},
		Phase: phasePivoting, Resume: true}
	b, _ := json.Marshal(j)
	if err := proc.WriteFile(journalPath(dir, "disk0"), b); err != nil {
		t.Fatal(err)
	}
	if u, want := UnfinishedMerge(dir), "disk disk0 (disk0-2.qcow2 into disk0-1.qcow2, pivoting)"; u != want {
		t.Fatalf("UnfinishedMerge = %q, want %q", u, want)
	}
}
