package server

import (
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// collectStep is one step of removing deleted (hidden) snapshots' data:
// merges to run and files to remove on the VM's host, then the change to
// the VM's spec that records them.
type collectStep struct {
	what   string
	merges []hypervisor.DiskMerge
	remove []string
	apply  func(*api.VMSpec)
}

// planCollect finds one hidden snapshot whose data can go and says how:
//
//   - with no child (no snapshot taken after it, not the current state's
//     base), its files are removed;
//   - with one child, each of its files is merged with the child's file of
//     the same disk: the child's data is committed into it and it takes
//     the child's place (the child's own children are re-pointed at it),
//     so only the (usually small) newer data moves;
//   - with two or more, it stays until a branch goes.
//
// Files that linked clones use (dep) are never merged away. running says
// whether the VM runs, to merge in its chain live. It is pure: the spec
// in, a plan out; a damaged tree (a cycle) is an error.
func planCollect(spec api.VMSpec, running bool, abs func(api.VMDisk) string, dep func(string) bool) (*collectStep, error) {
	if err := api.CheckSnapshotTree(spec.Snapshots); err != nil {
		return nil, err
	}
	chain, err := api.SnapshotLineage(spec.Snapshots, spec.CurrentSnapshotID)
	if err != nil {
		return nil, err
	}
	children := func(id string) (snaps []int, current bool) {
		for i, sn := range spec.Snapshots {
			if sn.ParentID == id {
				snaps = append(snaps, i)
			}
		}
		return snaps, spec.CurrentSnapshotID == id
	}
	// inChain says whether a snapshot is the current state's base or one
	// of its ancestors: its files are open in the running VM.
	inChain := func(id string) bool {
		return slices.ContainsFunc(chain, func(sn *api.VMSnapshot) bool { return sn.ID == id })
	}
	diskOf := func(ds []api.VMDisk, name string) *api.VMDisk {
		if i := slices.IndexFunc(ds, func(d api.VMDisk) bool { return d.Name == name }); i >= 0 {
			return &ds[i]
		}
		return nil
	}
	used := func(ds []api.VMDisk) bool {
		for _, d := range ds {
			if dep(abs(d)) {
				return true
			}
		}
		return false
	}
	for _, n := range spec.Snapshots {
		if !n.Hidden || used(n.Disks) {
			continue
		}
		kids, cur := children(n.ID)
		memory := func(st *collectStep) {
			if n.Memory && len(spec.Disks)+len(n.Disks) > 0 {
				ds := n.Disks
				if len(ds) == 0 {
					ds = spec.Disks
				}
				st.remove = append(st.remove, abs(api.VMDisk{Datastore: ds[0].Datastore, Path: n.MemoryPath}))
			}
		}
		id := n.ID
		switch {
		case len(kids) == 0 && !cur:
			st := &collectStep{what: "removing the files of a deleted snapshot"}
			for _, d := range n.Disks {
				st.remove = append(st.remove, abs(d))
			}
			memory(st)
			st.apply = func(sp *api.VMSpec) {
				sp.Snapshots = slices.DeleteFunc(sp.Snapshots, func(x api.VMSnapshot) bool { return x.ID == id })
			}
			return st, nil
		case len(kids)+btoi(cur) != 1:
			continue
		}
		// One child: the current state, or a snapshot.
		var child *api.VMSnapshot
		childDisks := spec.Disks
		if !cur {
			child = &spec.Snapshots[kids[0]]
			childDisks = child.Disks
		}
		if used(childDisks) {
			continue // the child's files are linked to: they stay
		}
		live := running && (cur || inChain(child.ID))
		st := &collectStep{what: "merging the data of a deleted snapshot into " + label(child)}
		newPath := map[string]string{}
		for _, d := range n.Disks {
			c := diskOf(childDisks, d.Name)
			if c == nil || c.Datastore.ID != d.Datastore.ID {
				st.remove = append(st.remove, abs(d))
				continue
			}
			m := hypervisor.DiskMerge{Disk: d.Name, Top: abs(*c), Base: abs(d), Active: cur, Live: live}
			// The child's children are backed by its file.
			if !cur {
				gk, gcur := children(child.ID)
				for _, g := range gk {
					if x := diskOf(spec.Snapshots[g].Disks, d.Name); x != nil {
						m.Children = append(m.Children, abs(*x))
					}
				}
				if gcur {
					if x := diskOf(spec.Disks, d.Name); x != nil {
						m.Children = append(m.Children, abs(*x))
					}
				}
			}
			st.merges = append(st.merges, m)
			newPath[d.Name] = d.Path
		}
		memory(st)
		parent := n.ParentID
		st.apply = func(sp *api.VMSpec) {
			move := func(ds []api.VMDisk) {
				for i := range ds {
					if p, ok := newPath[ds[i].Name]; ok {
						ds[i].Path = p
					}
				}
			}
			if cur {
				move(sp.Disks)
				sp.CurrentSnapshotID = parent
			}
			for i := range sp.Snapshots {
				if sp.Snapshots[i].ParentID == id {
					sp.Snapshots[i].ParentID = parent
					move(sp.Snapshots[i].Disks)
				}
			}
			sp.Snapshots = slices.DeleteFunc(sp.Snapshots, func(x api.VMSnapshot) bool { return x.ID == id })
		}
		return st, nil
	}
	return nil, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// label names a merge's child: a snapshot, or the current state (nil).
func label(child *api.VMSnapshot) string {
	switch {
	case child == nil:
		return "the current state"
	case child.Hidden:
		return "a deleted snapshot"
	}
	return "snapshot " + child.Name
}
