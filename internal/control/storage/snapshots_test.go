package storage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts/hoststest"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// snap is a snapshot of v1 whose frozen disk0 is v1/FILE.qcow2 (FILE
// is its name).
func (w *world) snap(name, parent string) api.VMSnapshot {
	return api.VMSnapshot{ID: "id-" + name, Name: name, ParentID: parentID(parent), CPUs: 1, MemoryBytes: 512 << 20, PowerState: api.PowerOff,
		Disks: []api.VMDisk{w.disk("disk0", name)}}
}

func parentID(name string) string {
	if name == "" {
		return ""
	}
	return "id-" + name
}

// merges shows the merges the hosts were asked for: "TOP>BASE", with the
// files backed by TOP, and whether it is active (the current state's) and
// live (in the running VM).
func merges(cs []hoststest.Call) []string {
	var out []string
	for _, c := range cs {
		m := c.Args[1].(hypervisor.DiskMerge)
		s := strings.TrimPrefix(m.Top, "/ds1/v1/") + ">" + strings.TrimPrefix(m.Base, "/ds1/v1/")
		if len(m.Children) > 0 {
			var kids []string
			for _, k := range m.Children {
				kids = append(kids, strings.TrimPrefix(k, "/ds1/v1/"))
			}
			s += " backing " + strings.Join(kids, ",")
		}
		if m.Active {
			s += " active"
		}
		if m.Live {
			s += " live"
		}
		out = append(out, s)
	}
	return out
}

// removed lists the files the hosts were asked to remove.
func removed(cs []hoststest.Call) []string {
	var out []string
	for _, c := range cs {
		for _, f := range c.Args[0].([]string) {
			out = append(out, strings.TrimPrefix(f, "/ds1/v1/"))
		}
	}
	return out
}

// What a snapshot delete merges and removes, and the tree it leaves, for
// linear and branched trees, with the current state inside and outside
// the deleted branch, the VM running or not.
func TestSnapshotDeleteCollects(t *testing.T) {
	for _, c := range []struct {
		name    string
		running bool
		build   func(w *world) ([]api.VMSnapshot, string) // the snapshots and the current state's base
		delete  string
		merges  []string
		removed []string
		tree    string
		kept    bool
	}{{
		name: "linear, the current state's base: the current file merges into it", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			return []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a")}, "b"
		},
		delete: "b", merges: []string{"cur.qcow2>b.qcow2 active live"},
		tree: "a<@v1/a.qcow2 | current a@v1/b.qcow2",
	}, {
		name: "linear, under the current state's base: its child merges into it, live", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			return []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a")}, "b"
		},
		delete: "a", merges: []string{"b.qcow2>a.qcow2 backing cur.qcow2 live"},
		tree: "b<@v1/a.qcow2 | current b@v1/cur.qcow2",
	}, {
		name: "linear, the VM off: the merge is offline",
		build: func(w *world) ([]api.VMSnapshot, string) {
			return []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a")}, "b"
		},
		delete: "a", merges: []string{"b.qcow2>a.qcow2 backing cur.qcow2"},
		tree: "b<@v1/a.qcow2 | current b@v1/cur.qcow2",
	}, {
		name: "branched, a leaf outside the current branch: its files go", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			return []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a"), w.snap("c", "a")}, "c"
		},
		delete: "b", removed: []string{"b.qcow2"},
		tree: "a<@v1/a.qcow2 c<a@v1/c.qcow2 | current c@v1/cur.qcow2",
	}, {
		name: "branched, the current branch's base: the current file merges into it", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			return []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a"), w.snap("c", "a")}, "c"
		},
		delete: "c", merges: []string{"cur.qcow2>c.qcow2 active live"},
		tree: "a<@v1/a.qcow2 b<a@v1/b.qcow2 | current a@v1/c.qcow2",
	}, {
		name: "branched, the branch point: only hidden, its data stays", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			return []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a"), w.snap("c", "a")}, "c"
		},
		delete: "a", kept: true,
		tree: "~a<@v1/a.qcow2 b<a@v1/b.qcow2 c<a@v1/c.qcow2 | current c@v1/cur.qcow2",
	}, {
		name: "a branch of a hidden branch point goes: the point merges into the branch left, in the running chain", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			a := w.snap("a", "")
			a.Hidden = true
			return []api.VMSnapshot{a, w.snap("b", "a"), w.snap("c", "a")}, "c"
		},
		delete: "b", removed: []string{"b.qcow2"}, merges: []string{"c.qcow2>a.qcow2 backing cur.qcow2 live"},
		tree: "c<@v1/a.qcow2 | current c@v1/cur.qcow2",
	}, {
		name: "a hidden branch point, the branch left is not the current one: the merge is not live", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			a := w.snap("a", "")
			a.Hidden = true
			return []api.VMSnapshot{w.snap("r", ""), a, w.snap("b", "a"), w.snap("c", "a")}, "r"
		},
		delete: "b", removed: []string{"b.qcow2"}, merges: []string{"c.qcow2>a.qcow2"},
		tree: "r<@v1/r.qcow2 c<@v1/a.qcow2 | current r@v1/cur.qcow2",
	}, {
		name: "a leaf with saved memory: the memory goes too", running: true,
		build: func(w *world) ([]api.VMSnapshot, string) {
			b := w.snap("b", "a")
			b.Memory, b.MemoryPath = true, "v1/mem-b.vmstate"
			return []api.VMSnapshot{w.snap("a", ""), b, w.snap("c", "a")}, "c"
		},
		delete: "b", removed: []string{"b.qcow2", "mem-b.vmstate"},
		tree: "a<@v1/a.qcow2 c<a@v1/c.qcow2 | current c@v1/cur.qcow2",
	}} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			w.start(t)
			vm := w.vm(t, "v1", func(vm *api.VM) {
				vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = c.build(w)
				vm.Spec.CurrentSnapshotID = parentID(vm.Spec.CurrentSnapshotID)
				if c.running {
					vm.Status.PowerState = api.PowerOn
				}
			})
			tk, err := w.svc.DeleteSnapshot(context.Background(), vm, c.delete)
			tk = w.run(t, tk, err)
			if got := merges(w.calls("MergeDisk")); fmt.Sprint(got) != fmt.Sprint(c.merges) {
				t.Errorf("merges %q, want %q", got, c.merges)
			}
			if got := removed(w.calls("RemoveFiles")); fmt.Sprint(got) != fmt.Sprint(c.removed) {
				t.Errorf("removed %q, want %q", got, c.removed)
			}
			res := params[api.SnapshotResult](t, &api.Task{Params: tk.Result})
			if (res.Kept != "") != c.kept || res.Snapshot != c.delete {
				t.Errorf("result %+v, want kept %v", res, c.kept)
			}
			got, err := w.readVM(vm.Metadata.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tree(got) != c.tree {
				t.Errorf("tree after:\n  %s\nwant\n  %s", tree(got), c.tree)
			}
		})
	}
}

// A delete is refused while a linked clone reads the snapshot's files,
// naming the clone.
func TestSnapshotDeleteRefusedForLinkedClones(t *testing.T) {
	w := newWorld(t)
	vm := w.vm(t, "v1", func(vm *api.VM) {
		vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = []api.VMSnapshot{w.snap("a", "")}, "id-a"
	})
	w.vm(t, "lc1", func(c *api.VM) {
		c.Spec.Disks = []api.VMDisk{{Name: "disk0", Path: "lc1/disk0.qcow2", Datastore: api.Ref{ID: w.ds1.Metadata.ID}, Source: "/ds1/v1/a.qcow2", Linked: true}}
	})
	_, err := w.svc.DeleteSnapshot(context.Background(), vm, "a")
	wantErr(t, "delete", err, api.ErrConflict, "delete snapshot of vm v1: linked clones depend on snapshot a: lc1; delete them first")
}

// Requests for one snapshot name at one VM: the second is refused while
// the first's task is unfinished, and of racing ones exactly one gets in.
func TestSnapshotNameClaims(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	vm := w.vm(t, "v1", nil)
	first, err := w.svc.CreateSnapshot(ctx, vm, api.SnapshotCreateRequest{Name: "s1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.svc.CreateSnapshot(ctx, w.cached(t, vm.Metadata.ID), api.SnapshotCreateRequest{Name: "s1"})
	wantErr(t, "the same name again", err, api.ErrConflict,
		fmt.Sprintf("snapshot vm v1: vm v1 is already taking a snapshot named \"s1\" (task %s)", first.Metadata.ID))
	if _, err := w.svc.CreateSnapshot(ctx, w.cached(t, vm.Metadata.ID), api.SnapshotCreateRequest{Name: "s2"}); err != nil {
		t.Fatalf("another name: %v", err)
	}

	// Racing requests, all from the VM as it was before any of them.
	stale := w.cached(t, vm.Metadata.ID)
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = w.svc.CreateSnapshot(ctx, stale, api.SnapshotCreateRequest{Name: "race"})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !strings.Contains(err.Error(), `vm v1 is already taking a snapshot named "race"`):
			t.Errorf("a racing request: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d racing requests for one name got in: %v", ok, n, errs)
	}
	if err := w.st.Cache.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	var queued []string
	for _, tk := range w.tasks() {
		if tk.Op == api.OpSnapshotCreate {
			queued = append(queued, params[struct{ Name string }](t, tk).Name)
		}
	}
	slices.Sort(queued)
	if fmt.Sprint(queued) != "[race s1 s2]" {
		t.Fatalf("snapshot tasks queued for %v", queued)
	}
}

// A name a snapshot has is refused; once deleted (hidden) it is free.
func TestSnapshotNameTaken(t *testing.T) {
	w := newWorld(t)
	hidden := w.snap("old", "")
	hidden.Hidden = true
	vm := w.vm(t, "v1", func(vm *api.VM) {
		vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = []api.VMSnapshot{w.snap("a", ""), hidden}, "id-a"
	})
	_, err := w.svc.CreateSnapshot(context.Background(), vm, api.SnapshotCreateRequest{Name: "a"})
	wantErr(t, "a taken name", err, api.ErrConflict, `snapshot vm v1: vm v1 already has a snapshot named "a"`)
	if _, err := w.svc.CreateSnapshot(context.Background(), vm, api.SnapshotCreateRequest{Name: "old"}); err != nil {
		t.Fatalf("the name of a deleted snapshot: %v", err)
	}
}

// A merge is tried again while the host does not answer, and 3 more
// times when it fails (QEMU died under it); past that the delete fails,
// saying what it was doing, and the tree is as before.
func TestSnapshotDeleteRetriesMerges(t *testing.T) {
	for _, c := range []struct {
		name  string
		fails []error // the answers to the merges, in order, then success
		calls int
		err   string
	}{
		// More answers than the tries after a failure: the host is waited for.
		{"the host restarting", slices.Repeat([]error{api.Errorf(api.ErrUnavailable, "host h1 is restarting")}, 5), 6, ""},
		{"QEMU dying under it", []error{errors.New("qemu exited"), errors.New("qemu exited"), errors.New("qemu exited")}, 4, ""},
		{"failing for good", []error{errors.New("qemu exited"), errors.New("qemu exited"), errors.New("qemu exited"), errors.New("block job failed")}, 4,
			"delete snapshot b of vm v1: merging the data of a deleted snapshot into the current state: block job failed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t)
			var mu sync.Mutex
			n := 0
			w.hosts.On["MergeDisk"] = func(hoststest.Call) ([]any, error) {
				mu.Lock()
				defer mu.Unlock()
				n++
				if n <= len(c.fails) {
					return nil, c.fails[n-1]
				}
				return nil, nil
			}
			w.start(t)
			vm := w.vm(t, "v1", func(vm *api.VM) {
				vm.Spec.Snapshots, vm.Spec.CurrentSnapshotID = []api.VMSnapshot{w.snap("a", ""), w.snap("b", "a")}, "id-b"
			})
			tk, err := w.svc.DeleteSnapshot(context.Background(), vm, "b")
			if err != nil {
				t.Fatal(err)
			}
			done := w.wait(t, tk.Metadata.ID)
			if got := len(w.calls("MergeDisk")); got != c.calls {
				t.Errorf("%d merges, want %d", got, c.calls)
			}
			got, _ := w.readVM(vm.Metadata.ID)
			if c.err == "" {
				if done.State != api.TaskSucceeded || tree(got) != "a<@v1/a.qcow2 | current a@v1/b.qcow2" {
					t.Fatalf("task %s %v, tree %s", done.State, done.Error, tree(got))
				}
				return
			}
			if done.State != api.TaskFailed || done.Error == nil || done.Error.Message != c.err {
				t.Fatalf("task %s %+v, want the error %q", done.State, done.Error, c.err)
			}
			if tree(got) != "a<@v1/a.qcow2 b<a@v1/b.qcow2 | current b@v1/cur.qcow2" {
				t.Fatalf("a failed delete changed the tree: %s", tree(got))
			}
		})
	}
}
