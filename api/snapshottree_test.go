package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// A spec stored before snapshots had IDs (the tree by name) reads as a
// tree by ID, the same at every read; one that two racing requests left
// with two snapshots of one name, the second under the first, reads as a
// chain, not a loop.
func TestLegacySnapshotTreeReadsByID(t *testing.T) {
	stored := `{"cpus":1,"memoryBytes":1024,"disks":[],"nics":[],"currentSnapshot":"snap-race","snapshots":[
		{"name":"base","created":"2024-01-01T00:00:00Z","powerState":"off","cpus":1,"memoryBytes":1024,"disks":[]},
		{"name":"snap-race","parent":"base","created":"2024-01-02T00:00:00Z","powerState":"off","cpus":1,"memoryBytes":1024,"disks":[]},
		{"name":"snap-race","parent":"snap-race","created":"2024-01-02T00:00:01Z","powerState":"off","cpus":1,"memoryBytes":1024,"disks":[]},
		{"name":"~gone-1","parent":"base","hidden":true,"created":"2024-01-01T12:00:00Z","powerState":"off","cpus":1,"memoryBytes":1024,"disks":[]}]}`
	var a, b VMSpec
	if err := json.Unmarshal([]byte(stored), &a); err != nil {
		t.Fatal(err)
	}
	var vm VM // as the store reads it
	if err := json.Unmarshal([]byte(`{"metadata":{"id":"v","name":"race-vm"},"spec":`+stored+`}`), &vm); err != nil {
		t.Fatal(err)
	}
	b = vm.Spec
	s := a.Snapshots
	if err := CheckSnapshotTree(s); err != nil {
		t.Fatalf("upgraded tree: %v", err)
	}
	for i := range s {
		if s[i].ID != b.Snapshots[i].ID {
			t.Fatalf("snapshot %d has ID %s at one read, %s at another", i, s[i].ID, b.Snapshots[i].ID)
		}
	}
	if s[0].ParentID != "" || s[1].ParentID != s[0].ID || s[2].ParentID != s[1].ID || s[3].ParentID != s[0].ID || !s[3].Hidden {
		t.Fatalf("parents: %+v", s)
	}
	if a.CurrentSnapshotID != s[2].ID {
		t.Fatalf("current %q, want the newer snap-race %q", a.CurrentSnapshotID, s[2].ID)
	}
	// Written back, it is read as it was written.
	out, _ := json.Marshal(a)
	if strings.Contains(string(out), `"parent"`) || strings.Contains(string(out), `"currentSnapshot"`) {
		t.Fatalf("written spec keeps names as references: %s", out)
	}
	var c VMSpec
	if err := json.Unmarshal(out, &c); err != nil || c.CurrentSnapshotID != a.CurrentSnapshotID || c.Snapshots[2].ParentID != s[1].ID {
		t.Fatalf("read back: %+v (%v)", c, err)
	}
}

func TestSnapshotLineageStopsOnACycle(t *testing.T) {
	snaps := []VMSnapshot{{ID: "a", Name: "a"}, {ID: "b", Name: "b", ParentID: "c"}, {ID: "c", Name: "c", ParentID: "b"}, {ID: "d", Name: "d", ParentID: "c"}}
	if l, err := SnapshotLineage(snaps, "a"); err != nil || len(l) != 1 {
		t.Fatalf("lineage of a root: %v %v", l, err)
	}
	_, err := SnapshotLineage(snaps, "d")
	if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "cycle through snapshot") {
		t.Fatalf("lineage through a cycle: %v", err)
	}
	if err := CheckSnapshotTree(snaps); err == nil {
		t.Fatal("a cyclic tree passes the check")
	}
	if err := CheckSnapshotTree([]VMSnapshot{{ID: "a", Name: "a"}, {ID: "a", Name: "b", ParentID: "a"}}); err == nil {
		t.Fatal("two snapshots with one ID pass the check")
	}
	self := []VMSnapshot{{ID: "a", Name: "a", ParentID: "a"}}
	if err := CheckSnapshotTree(self); err == nil {
		t.Fatal("a snapshot that is its own parent passes the check")
	}
}
