package api

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// SnapshotLineage returns the snapshot with ID id and its ancestors,
// nearest first. It ends at a root: no parent, or one not in snaps. A
// snapshot met twice is a cycle, an error naming it, so that no walk of a
// damaged tree goes round forever.
func SnapshotLineage(snaps []VMSnapshot, id string) ([]*VMSnapshot, error) {
	var out []*VMSnapshot
	for id != "" {
		i := slices.IndexFunc(snaps, func(s VMSnapshot) bool { return s.ID == id })
		if i < 0 {
			break
		}
		sn := &snaps[i]
		if slices.Contains(out, sn) {
			return out, Errorf(ErrConflict, "the snapshot tree has a cycle through snapshot %s (%s)", sn.Name, sn.ID)
		}
		out = append(out, sn)
		id = sn.ParentID
	}
	return out, nil
}

// CheckSnapshotTree checks that snaps form a tree: every ID given once,
// and no snapshot its own ancestor.
func CheckSnapshotTree(snaps []VMSnapshot) error {
	seen := make(map[string]bool, len(snaps))
	for _, sn := range snaps {
		if sn.ID == "" || seen[sn.ID] {
			return Errorf(ErrConflict, "the snapshot tree gives snapshot %s the ID %q, which is empty or another's too", sn.Name, sn.ID)
		}
		seen[sn.ID] = true
	}
	for _, sn := range snaps {
		if _, err := SnapshotLineage(snaps, sn.ID); err != nil {
			return err
		}
	}
	return nil
}

// UnmarshalJSON reads a VM's spec as any version stored it. Before
// snapshots had IDs, the tree named them (parent, currentSnapshot): such a
// spec gets IDs made from each snapshot's name and time, the same at every
// read until a write stores them, and its references become IDs.
func (s *VMSpec) UnmarshalJSON(b []byte) error {
	type plain VMSpec // without this method
	if err := json.Unmarshal(b, (*plain)(s)); err != nil {
		return err
	}
	if !slices.ContainsFunc(s.Snapshots, func(sn VMSnapshot) bool { return sn.ID == "" }) {
		return nil
	}
	var old struct {
		Current   string `json:"currentSnapshot"`
		Snapshots []struct {
			Parent string `json:"parent"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return err
	}
	parents := make([]string, len(s.Snapshots))
	for i := range old.Snapshots {
		parents[i] = old.Snapshots[i].Parent
	}
	upgradeSnapshots(s, parents, old.Current)
	return nil
}

// upgradeSnapshots gives IDs to snapshots stored without, and turns the
// names that referred to them into IDs. A name stands for the newest
// snapshot of that name taken before the one that refers to it: requests
// that raced could take two snapshots of one name, the second with the
// first as its parent.
func upgradeSnapshots(s *VMSpec, parents []string, current string) {
	snaps := s.Snapshots
	ids := map[string]bool{}
	for _, sn := range snaps {
		ids[sn.ID] = true
	}
	for i := range snaps {
		if snaps[i].ID != "" {
			continue
		}
		key := snaps[i].Name + "\x00" + snaps[i].Created.UTC().Format(time.RFC3339Nano)
		id := uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String()
		for n := 1; ids[id]; n++ {
			id = uuid.NewSHA1(uuid.NameSpaceOID, []byte(key+"\x00"+strconv.Itoa(n))).String()
		}
		ids[id] = true
		snaps[i].ID = id
	}
	named := func(name string, self int, before time.Time) string {
		best := -1
		for j := range snaps {
			if j == self || snaps[j].Name != name {
				continue
			}
			newer := best < 0 || snaps[j].Created.After(snaps[best].Created)
			if (self < 0 || !snaps[j].Created.After(before)) && newer {
				best = j
			}
		}
		for j := range snaps {
			if best < 0 && j != self && snaps[j].Name == name { // clocks disagree: any other of that name
				best = j
			}
		}
		if best < 0 {
			return ""
		}
		return snaps[best].ID
	}
	for i := range snaps {
		if snaps[i].ParentID == "" && parents[i] != "" {
			snaps[i].ParentID = named(parents[i], i, snaps[i].Created)
		}
	}
	if s.CurrentSnapshotID == "" && current != "" {
		s.CurrentSnapshotID = named(current, -1, time.Time{})
	}
}
