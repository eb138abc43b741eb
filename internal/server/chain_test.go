package server

import (
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

func snap(name, parent string, hidden bool, path string) api.VMSnapshot {
	return api.VMSnapshot{Name: name, Parent: parent, Hidden: hidden, Disks: []api.VMDisk{{Name: "disk0", Path: path, Datastore: api.Ref{ID: "ds"}}}}
}

func absOf(d api.VMDisk) string { return "/ds/" + d.Path }

// The collection plan, case by case: what is merged into what, what is
// removed, and how the spec reads afterwards.
func TestPlanCollect(t *testing.T) {
	none := func(string) bool { return false }
	// Each case gets its own slice: apply changes it.
	activeDisks := func() []api.VMDisk { return []api.VMDisk{{Name: "disk0", Path: "vm/cur.qcow2", Datastore: api.Ref{ID: "ds"}}} }
	t.Run("nothing hidden", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), Snapshots: []api.VMSnapshot{snap("a", "", false, "vm/disk0.qcow2")}, CurrentSnapshot: "a"}
		if st := planCollect(spec, true, absOf, none); st != nil {
			t.Fatalf("plan for nothing hidden: %+v", st)
		}
	})
	t.Run("the current state's base: active merge", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), Snapshots: []api.VMSnapshot{snap("a", "", true, "vm/disk0.qcow2")}, CurrentSnapshot: "a"}
		st := planCollect(spec, true, absOf, none)
		if st == nil || len(st.merges) != 1 || len(st.remove) != 0 {
			t.Fatalf("plan %+v", st)
		}
		m := st.merges[0]
		if m.Top != "/ds/vm/cur.qcow2" || m.Base != "/ds/vm/disk0.qcow2" || !m.Active || !m.Live || len(m.Children) != 0 {
			t.Fatalf("merge %+v", m)
		}
		st.apply(&spec)
		if len(spec.Snapshots) != 0 || spec.CurrentSnapshot != "" || spec.Disks[0].Path != "vm/disk0.qcow2" {
			t.Fatalf("spec after: %+v", spec)
		}
	})
	t.Run("the middle of a chain: its child merges into it, the child's child is re-pointed", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshot: "c", Snapshots: []api.VMSnapshot{
			snap("a", "", false, "vm/disk0.qcow2"), snap("b", "a", true, "vm/b.qcow2"), snap("c", "b", false, "vm/c.qcow2")}}
		st := planCollect(spec, false, absOf, none)
		if st == nil || len(st.merges) != 1 {
			t.Fatalf("plan %+v", st)
		}
		m := st.merges[0]
		if m.Top != "/ds/vm/c.qcow2" || m.Base != "/ds/vm/b.qcow2" || m.Active || m.Live || strings.Join(m.Children, ",") != "/ds/vm/cur.qcow2" {
			t.Fatalf("merge %+v", m)
		}
		st.apply(&spec)
		if len(spec.Snapshots) != 2 || spec.Snapshots[1].Name != "c" || spec.Snapshots[1].Parent != "a" || spec.Snapshots[1].Disks[0].Path != "vm/b.qcow2" {
			t.Fatalf("spec after: %+v", spec.Snapshots)
		}
	})
	t.Run("a hidden leaf: its files go", func(t *testing.T) {
		s := snap("b", "a", true, "vm/b.qcow2")
		s.Memory, s.MemoryPath = true, "vm/mem.vmstate"
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshot: "a", Snapshots: []api.VMSnapshot{snap("a", "", false, "vm/disk0.qcow2"), s}}
		st := planCollect(spec, true, absOf, none)
		if st == nil || len(st.merges) != 0 || strings.Join(st.remove, ",") != "/ds/vm/b.qcow2,/ds/vm/mem.vmstate" {
			t.Fatalf("plan %+v", st)
		}
	})
	t.Run("two branches: kept", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshot: "a", Snapshots: []api.VMSnapshot{
			snap("a", "", true, "vm/disk0.qcow2"), snap("b", "a", false, "vm/b.qcow2")}}
		if st := planCollect(spec, true, absOf, none); st != nil {
			t.Fatalf("plan for a snapshot with two branches: %+v", st)
		}
	})
	t.Run("files linked clones use are not merged away", func(t *testing.T) {
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshot: "c", Snapshots: []api.VMSnapshot{
			snap("b", "", true, "vm/disk0.qcow2"), snap("c", "b", false, "vm/c.qcow2")}}
		used := func(p string) bool { return p == "/ds/vm/c.qcow2" }
		if st := planCollect(spec, true, absOf, used); st != nil {
			t.Fatalf("plan merging a file a clone uses: %+v", st)
		}
	})
	t.Run("a disk removed since: its old file goes", func(t *testing.T) {
		s := snap("a", "", true, "vm/disk0.qcow2")
		s.Disks = append(s.Disks, api.VMDisk{Name: "disk1", Path: "vm/disk1.qcow2", Datastore: api.Ref{ID: "ds"}})
		spec := api.VMSpec{Disks: activeDisks(), CurrentSnapshot: "a", Snapshots: []api.VMSnapshot{s}}
		st := planCollect(spec, false, absOf, none)
		if st == nil || len(st.merges) != 1 || strings.Join(st.remove, ",") != "/ds/vm/disk1.qcow2" {
			t.Fatalf("plan %+v", st)
		}
	})
}
