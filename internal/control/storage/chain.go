package storage

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
	c := &collector{spec: spec, running: running, abs: abs, dep: dep, chain: chain}
	for _, n := range spec.Snapshots {
		if !n.Hidden || c.used(n.Disks) {
			continue
		}
		kids, cur := c.children(n.ID)
		switch {
		case len(kids) == 0 && !cur:
			return c.removal(n), nil
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
		if c.used(childDisks) {
			continue // the child's files are linked to: they stay
		}
		return c.merge(n, child, childDisks), nil
	}
	return nil, nil
}

// collector is what planCollect plans from: the spec, whether the VM
// runs, the current state's lineage, and how to name and check files.
type collector struct {
	spec    api.VMSpec
	running bool
	abs     func(api.VMDisk) string
	dep     func(string) bool
	chain   []*api.VMSnapshot
}

// children lists the snapshots taken after a snapshot (as indexes), and
// says whether the current state descends from it.
func (c *collector) children(id string) (snaps []int, current bool) {
	for i, sn := range c.spec.Snapshots {
		if sn.ParentID == id {
			snaps = append(snaps, i)
		}
	}
	return snaps, c.spec.CurrentSnapshotID == id
}

// inChain says whether a snapshot is the current state's base or one of
// its ancestors: its files are open in the running VM.
func (c *collector) inChain(id string) bool {
	return slices.ContainsFunc(c.chain, func(sn *api.VMSnapshot) bool { return sn.ID == id })
}

// used says whether linked clones use any of the disks' files.
func (c *collector) used(ds []api.VMDisk) bool {
	for _, d := range ds {
		if c.dep(c.abs(d)) {
			return true
		}
	}
	return false
}

func diskOf(ds []api.VMDisk, name string) *api.VMDisk {
	if i := slices.IndexFunc(ds, func(d api.VMDisk) bool { return d.Name == name }); i >= 0 {
		return &ds[i]
	}
	return nil
}

// memory adds a snapshot's saved memory to the files a step removes.
func (c *collector) memory(n api.VMSnapshot, st *collectStep) {
	if n.Memory && len(c.spec.Disks)+len(n.Disks) > 0 {
		ds := n.Disks
		if len(ds) == 0 {
			ds = c.spec.Disks
		}
		st.remove = append(st.remove, c.abs(api.VMDisk{Datastore: ds[0].Datastore, Path: n.MemoryPath}))
	}
}

// removal removes the files of a hidden snapshot with no child.
func (c *collector) removal(n api.VMSnapshot) *collectStep {
	st := &collectStep{what: "removing the files of a deleted snapshot"}
	for _, d := range n.Disks {
		st.remove = append(st.remove, c.abs(d))
	}
	c.memory(n, st)
	id := n.ID
	st.apply = func(sp *api.VMSpec) {
		sp.Snapshots = slices.DeleteFunc(sp.Snapshots, func(x api.VMSnapshot) bool { return x.ID == id })
	}
	return st
}

// merge merges the files of a hidden snapshot with its one child (a
// snapshot, or the current state when child is nil), whose disks are
// childDisks.
func (c *collector) merge(n api.VMSnapshot, child *api.VMSnapshot, childDisks []api.VMDisk) *collectStep {
	cur := child == nil
	live := c.running && (cur || c.inChain(child.ID))
	st := &collectStep{what: "merging the data of a deleted snapshot into " + label(child)}
	newPath := map[string]string{}
	for _, d := range n.Disks {
		cd := diskOf(childDisks, d.Name)
		if cd == nil || cd.Datastore.ID != d.Datastore.ID {
			st.remove = append(st.remove, c.abs(d))
			continue
		}
		m := hypervisor.DiskMerge{Disk: d.Name, Top: c.abs(*cd), Base: c.abs(d), Active: cur, Live: live}
		// The child's children are backed by its file.
		if !cur {
			m.Children = c.grandchildren(child.ID, d.Name)
		}
		st.merges = append(st.merges, m)
		newPath[d.Name] = d.Path
	}
	c.memory(n, st)
	id, parent := n.ID, n.ParentID
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
	return st
}

// grandchildren lists the files of a disk that a snapshot's children
// (snapshots and the current state) are backed by.
func (c *collector) grandchildren(childID, disk string) []string {
	var out []string
	gk, gcur := c.children(childID)
	for _, g := range gk {
		if x := diskOf(c.spec.Snapshots[g].Disks, disk); x != nil {
			out = append(out, c.abs(*x))
		}
	}
	if gcur {
		if x := diskOf(c.spec.Disks, disk); x != nil {
			out = append(out, c.abs(*x))
		}
	}
	return out
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
