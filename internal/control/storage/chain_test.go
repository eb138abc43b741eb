package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

func snap(name, parent string, hidden bool, path string) api.VMSnapshot {
	return api.VMSnapshot{ID: name, Name: name, ParentID: parent, Hidden: hidden, Disks: []api.VMDisk{{Name: "disk0", Path: path, Datastore: api.Ref{ID: "ds"}}}}
}

func absOf(d api.VMDisk) string { return "/ds/" + d.Path }

func mustPlan(t *testing.T, spec api.VMSpec, running bool, dep func(string) bool) *collectStep {
	t.Helper()
	st, err := planCollect(spec, running, absOf, dep)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return st
}

// The collection plan, case by case: what is merged into what, what is
// removed, and how the spec reads afterwards.
func TestPlanCollect(t *testing.T) {
	none := func(string) bool { return false }
	// Each case gets its own slice: apply changes it.
	activeDisks := func() []api.VMDisk {
		return []api.VMDisk{{Name: "disk0", Path: "vm/cur.qcow2", Datastore: api.Ref{ID: "ds"}}}
	}
	t.Run("nothing hidden", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), Snapshots: []api.VMSnapshot{snap("a", "", false, "vm/disk0.qcow2")}, CurrentSnapshotID: "a"}
		if st := mustPlan(t, spec, true, none); st != nil {
			t.Fatalf("plan for nothing hidden: %+v", st)
		}
	})
	t.Run("the current state's base: active merge", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), Snapshots: []api.VMSnapshot{snap("a", "", true, "vm/disk0.qcow2")}, CurrentSnapshotID: "a"}
		st := mustPlan(t, spec, true, none)
		if st == nil || len(st.merges) != 1 || len(st.remove) != 0 {
			t.Fatalf("plan %+v", st)
		}
		m := st.merges[0]
		if m.Top != "/ds/vm/cur.qcow2" || m.Base != "/ds/vm/disk0.qcow2" || !m.Active || !m.Live || len(m.Children) != 0 {
			t.Fatalf("merge %+v", m)
		}
		st.apply(&spec)
		if len(spec.Snapshots) != 0 || spec.CurrentSnapshotID != "" || spec.Disks[0].Path != "vm/disk0.qcow2" {
			t.Fatalf("spec after: %+v", spec)
		}
	})
	t.Run("the middle of a chain: its child merges into it, the child's child is re-pointed", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshotID: "c", Snapshots: []api.VMSnapshot{
			snap("a", "", false, "vm/disk0.qcow2"), snap("b", "a", true, "vm/b.qcow2"), snap("c", "b", false, "vm/c.qcow2")}}
		st := mustPlan(t, spec, false, none)
		if st == nil || len(st.merges) != 1 {
			t.Fatalf("plan %+v", st)
		}
		m := st.merges[0]
		if m.Top != "/ds/vm/c.qcow2" || m.Base != "/ds/vm/b.qcow2" || m.Active || m.Live || strings.Join(m.Children, ",") != "/ds/vm/cur.qcow2" {
			t.Fatalf("merge %+v", m)
		}
		st.apply(&spec)
		if len(spec.Snapshots) != 2 || spec.Snapshots[1].Name != "c" || spec.Snapshots[1].ParentID != "a" || spec.Snapshots[1].Disks[0].Path != "vm/b.qcow2" {
			t.Fatalf("spec after: %+v", spec.Snapshots)
		}
	})
	t.Run("a hidden leaf: its files go", func(t *testing.T) {
		s := snap("b", "a", true, "vm/b.qcow2")
		s.Memory, s.MemoryPath = true, "vm/mem.vmstate"
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshotID: "a", Snapshots: []api.VMSnapshot{snap("a", "", false, "vm/disk0.qcow2"), s}}
		st := mustPlan(t, spec, true, none)
		if st == nil || len(st.merges) != 0 || strings.Join(st.remove, ",") != "/ds/vm/b.qcow2,/ds/vm/mem.vmstate" {
			t.Fatalf("plan %+v", st)
		}
	})
	t.Run("two branches: kept", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshotID: "a", Snapshots: []api.VMSnapshot{
			snap("a", "", true, "vm/disk0.qcow2"), snap("b", "a", false, "vm/b.qcow2")}}
		if st := mustPlan(t, spec, true, none); st != nil {
			t.Fatalf("plan for a snapshot with two branches: %+v", st)
		}
	})
	t.Run("files linked clones use are not merged away", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshotID: "c", Snapshots: []api.VMSnapshot{
			snap("b", "", true, "vm/disk0.qcow2"), snap("c", "b", false, "vm/c.qcow2")}}
		used := func(p string) bool { return p == "/ds/vm/c.qcow2" }
		if st := mustPlan(t, spec, true, used); st != nil {
			t.Fatalf("plan merging a file a clone uses: %+v", st)
		}
	})
	t.Run("a disk removed since: its old file goes", func(t *testing.T) {
		s := snap("a", "", true, "vm/disk0.qcow2")
		s.Disks = append(s.Disks, api.VMDisk{Name: "disk1", Path: "vm/disk1.qcow2", Datastore: api.Ref{ID: "ds"}})
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshotID: "a", Snapshots: []api.VMSnapshot{s}}
		st := mustPlan(t, spec, false, none)
		if st == nil || len(st.merges) != 1 || strings.Join(st.remove, ",") != "/ds/vm/disk1.qcow2" {
			t.Fatalf("plan %+v", st)
		}
	})
}

// model is a VM's disk files as planCollect sees them, with data: each
// file holds blocks and is backed by another (or none).
type model struct {
	files   map[string]map[int]string
	backing map[string]string
}

func (m *model) read(file string) map[int]string {
	out := map[int]string{}
	var chain []string
	for f := file; f != ""; f = m.backing[f] {
		chain = append([]string{f}, chain...)
	}
	for _, f := range chain {
		for b, v := range m.files[f] {
			out[b] = v
		}
	}
	return out
}

// run applies a plan step the way the hosts do.
func (m *model) run(t *testing.T, st *collectStep) {
	for _, mg := range st.merges {
		if m.backing[mg.Top] != mg.Base {
			t.Fatalf("merge %s into %s, but its backing file is %s", mg.Top, mg.Base, m.backing[mg.Top])
		}
		for b, v := range m.files[mg.Top] {
			m.files[mg.Base][b] = v
		}
		for f, bk := range m.backing {
			if bk == mg.Top {
				if !slicesContain(mg.Children, f) {
					t.Fatalf("merge of %s does not list its child %s", mg.Top, f)
				}
				m.backing[f] = mg.Base
			}
		}
		delete(m.files, mg.Top)
		delete(m.backing, mg.Top)
	}
	for _, f := range st.remove {
		for g, bk := range m.backing {
			if bk == f {
				t.Fatalf("removed %s, which %s is backed by", f, g)
			}
		}
		delete(m.files, f)
		delete(m.backing, f)
	}
}

func slicesContain(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func views(spec api.VMSpec, m *model) map[string]string {
	out := map[string]string{"current": fmt.Sprint(m.read(absOf(spec.Disks[0])))}
	for _, sn := range spec.Snapshots {
		if !sn.Hidden {
			out[sn.Name] = fmt.Sprint(m.read(absOf(sn.Disks[0])))
		}
	}
	return out
}

// Deleting snapshots in every order keeps what every other snapshot and
// the current state hold, and in the end leaves one file: a tree of four
// snapshots with a branch (a revert), every permutation of deletes.
func TestDeleteInEveryOrderKeepsData(t *testing.T) {
	// Build: a, write, b, write, c, revert to b, write, d (on the branch),
	// write.
	base := func() (api.VMSpec, *model) {
		m := &model{files: map[string]map[int]string{}, backing: map[string]string{}}
		spec := api.VMSpec{Disks: []api.VMDisk{{Name: "disk0", Path: "vm/f0", Datastore: api.Ref{ID: "ds"}}}}
		m.files["/ds/vm/f0"] = map[int]string{0: "x"}
		n := 0
		newFile := func(backing string) string {
			n++
			p := fmt.Sprintf("vm/f%d", n)
			m.files["/ds/"+p] = map[int]string{}
			m.backing["/ds/"+p] = backing
			return p
		}
		take := func(name string) {
			cur := spec.Disks[0]
			spec.Snapshots = append(spec.Snapshots, api.VMSnapshot{ID: name, Name: name, ParentID: spec.CurrentSnapshotID, Disks: []api.VMDisk{cur}})
			spec.CurrentSnapshotID = name
			spec.Disks = []api.VMDisk{{Name: "disk0", Path: newFile(absOf(cur)), Datastore: api.Ref{ID: "ds"}}}
		}
		write := func(b int, v string) { m.files[absOf(spec.Disks[0])][b] = v }
		take("a")
		write(1, "a1")
		take("b")
		write(2, "b2")
		write(1, "b1")
		take("c")
		write(3, "c3")
		// Revert to b: the current state's file goes, a new one on b's.
		delete(m.files, absOf(spec.Disks[0]))
		delete(m.backing, absOf(spec.Disks[0]))
		for _, s := range spec.Snapshots {
			if s.Name == "b" {
				spec.Disks = []api.VMDisk{{Name: "disk0", Path: newFile(absOf(s.Disks[0])), Datastore: api.Ref{ID: "ds"}}}
			}
		}
		spec.CurrentSnapshotID = "b"
		write(4, "d4")
		take("d")
		write(5, "now5")
		return spec, m
	}
	var perms func([]string) [][]string
	perms = func(s []string) [][]string {
		if len(s) <= 1 {
			return [][]string{s}
		}
		var out [][]string
		for i := range s {
			rest := append(append([]string{}, s[:i]...), s[i+1:]...)
			for _, p := range perms(rest) {
				out = append(out, append([]string{s[i]}, p...))
			}
		}
		return out
	}
	none := func(string) bool { return false }
	for _, order := range perms([]string{"a", "b", "c", "d"}) {
		spec, m := base()
		want := views(spec, m)
		for _, name := range order {
			spec.Snapshots = append([]api.VMSnapshot(nil), spec.Snapshots...)
			hide(&spec, name)
			for i := 0; ; i++ {
				st := mustPlan(t, spec, true, none)
				if st == nil {
					break
				}
				if i > 10 {
					t.Fatalf("%v: no end to the plan", order)
				}
				m.run(t, st)
				st.apply(&spec)
			}
			delete(want, name)
			if got := views(spec, m); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("deleting %v, after %s:\n got %v\nwant %v", order, name, got, want)
			}
		}
		if len(spec.Snapshots) != 0 || len(m.files) != 1 || spec.Disks[0].Path != "vm/f0" {
			t.Fatalf("deleting %v left snapshots %v, files %v, disk %s", order, spec.Snapshots, m.backing, spec.Disks[0].Path)
		}
	}
}

func TestDatastoreAlarms(t *testing.T) {
	gib := api.Size(1 << 30)
	for _, c := range []struct {
		capacity, free api.Size
		want           string
	}{
		{0, 0, ""}, {100 * gib, 50 * gib, ""}, {100 * gib, 20 * gib, api.DatastoreAlarmWarning},
		{100 * gib, 6 * gib, api.DatastoreAlarmWarning}, {100 * gib, 5 * gib, api.DatastoreAlarmCritical}, {100 * gib, 0, api.DatastoreAlarmCritical},
	} {
		if got := AlarmLevel(c.capacity, c.free); got != c.want {
			t.Errorf("AlarmLevel(%s, %s) = %q, want %q", c.capacity, c.free, got, c.want)
		}
	}
	prev := &api.Datastore{Metadata: api.ObjectMeta{Name: "ds1"}, Status: api.DatastoreStatus{CapacityBytes: 100 * gib, FreeBytes: 30 * gib}}
	cur := &api.Datastore{Metadata: api.ObjectMeta{Name: "ds1"}, Status: api.DatastoreStatus{CapacityBytes: 100 * gib, FreeBytes: 4 * gib, Alarm: api.DatastoreAlarmCritical}}
	evs := DatastoreEvents(api.Event{Kind: api.KindDatastore}, prev, cur)
	if len(evs) != 1 || evs[0].Type != api.EventDatastoreAlarm || evs[0].To != "critical" || !strings.Contains(evs[0].Message, "96% used, past 95%") {
		t.Fatalf("events %+v", evs)
	}
	if evs := DatastoreEvents(api.Event{}, cur, cur); len(evs) != 0 {
		t.Fatalf("no change, events %+v", evs)
	}
}

// Every walk of a snapshot tree stops on a cycle with an error naming the
// VM and a snapshot: the list, the lookups of revert, delete and clone,
// and the merge plan of a delete.
func TestTreeWalksStopOnACycle(t *testing.T) {
	named := func(id, parent string, hidden bool) api.VMSnapshot {
		s := snap(id, parent, hidden, "vm/"+id+".qcow2")
		s.Name = "snap-race"
		return s
	}
	vm := &api.VM{Metadata: api.ObjectMeta{ID: "v", Name: "race-vm"}, Spec: api.VMSpec{
		Disks: []api.VMDisk{{Name: "disk0", Path: "vm/cur.qcow2", Datastore: api.Ref{ID: "ds"}}}, CurrentSnapshotID: "2",
		Snapshots: []api.VMSnapshot{snap("base", "", false, "vm/disk0.qcow2"), named("1", "2", true), named("2", "1", false)}}}
	check := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "cycle through snapshot snap-race") {
			t.Errorf("%s: %v, want an error naming the cycle", what, err)
		}
	}
	_, _, err := VisibleTree(vm)
	check("VisibleTree", err)
	if err == nil || !strings.Contains(err.Error(), "vm race-vm") {
		t.Errorf("VisibleTree does not name the VM: %v", err)
	}
	_, err = FindSnapshot(vm, "base") // revert, delete, clone --snapshot
	check("FindSnapshot", err)
	_, err = planCollect(vm.Spec, true, absOf, func(string) bool { return false })
	check("planCollect", err)
	// Unlooped, the same walks go through.
	vm.Spec.Snapshots[1].ParentID = "base"
	snaps, cur, err := VisibleTree(vm)
	if err != nil || len(snaps) != 2 || snaps[1].ParentID != "base" || cur != "2" {
		t.Fatalf("visible tree past a deleted snapshot: %+v, current %s (%v)", snaps, cur, err)
	}
	if _, err := planCollect(vm.Spec, true, absOf, func(string) bool { return false }); err != nil {
		t.Fatalf("plan for a sound tree: %v", err)
	}
}

// Two snapshots of one name (from before names were claimed): the name
// is ambiguous, a 409 giving both IDs; each is found by its ID.
func TestFindSnapshotOfARepeatedName(t *testing.T) {
	a, b := snap("id-1", "", false, "vm/1.qcow2"), snap("id-2", "id-1", false, "vm/2.qcow2")
	a.Name, b.Name = "snap-race", "snap-race"
	vm := &api.VM{Metadata: api.ObjectMeta{Name: "race-vm"}, Spec: api.VMSpec{Snapshots: []api.VMSnapshot{a, b}, CurrentSnapshotID: "id-2"}}
	_, err := FindSnapshot(vm, "snap-race")
	if !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "id-1, id-2") {
		t.Fatalf("a repeated name: %v", err)
	}
	if sn, err := FindSnapshot(vm, "id-2"); err != nil || sn.ParentID != "id-1" {
		t.Fatalf("by ID: %+v %v", sn, err)
	}
}
