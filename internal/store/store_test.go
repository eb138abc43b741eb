package store_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
	"github.com/vdc-project/vdc/internal/store/storetest"
)

func newStore(t *testing.T) (*store.Store, *store.Cache) {
	e := storetest.Start(t)
	s := store.New(e.Client)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := store.NewCache(s, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestCreateGetAndDuplicateName(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	dc := &api.Datacenter{Metadata: api.ObjectMeta{Name: "dc1"}}
	if _, err := s.Create(ctx, dc); err != nil {
		t.Fatal(err)
	}
	if dc.Metadata.ID == "" || dc.Metadata.Created.IsZero() {
		t.Fatalf("create did not set ID/created: %+v", dc.Metadata)
	}
	got, err := s.Get(ctx, api.KindDatacenter, dc.Metadata.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.GetMeta().Name != "dc1" || got.GetMeta().Revision == 0 {
		t.Fatalf("got %+v", got.GetMeta())
	}
	_, err = s.Create(ctx, &api.Datacenter{Metadata: api.ObjectMeta{Name: "dc1"}})
	if !errors.Is(err, api.ErrConflict) {
		t.Fatalf("duplicate name: want ErrConflict, got %v", err)
	}
	list, _, err := s.List(ctx, api.KindDatacenter)
	if err != nil || len(list) != 1 {
		t.Fatalf("after a refused duplicate there must be one datacenter, got %d (%v)", len(list), err)
	}
	if _, err := s.Get(ctx, api.KindDatacenter, "nope"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("want ErrNotFound, got %v", err)
	}
}

func TestUpdateIsRevisionChecked(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	dc := &api.Datacenter{Metadata: api.ObjectMeta{Name: "dc1"}}
	if _, err := s.Create(ctx, dc); err != nil {
		t.Fatal(err)
	}
	read, _ := s.Get(ctx, api.KindDatacenter, dc.Metadata.ID)
	// Two writers start from the same read; exactly one may win.
	var wins, conflicts int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			upd := store.Clone(read.(*api.Datacenter))
			upd.Spec.Description = "writer"
			_, err := s.Update(ctx, read, upd)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, api.ErrConflict):
				conflicts++
			default:
				t.Errorf("writer %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	if wins != 1 || conflicts != 7 {
		t.Fatalf("want 1 winner and 7 conflicts, got %d and %d", wins, conflicts)
	}
}

func TestRenameMovesNameIndex(t *testing.T) {
	s, c := newStore(t)
	ctx := context.Background()
	a := &api.Datacenter{Metadata: api.ObjectMeta{Name: "a"}}
	b := &api.Datacenter{Metadata: api.ObjectMeta{Name: "b"}}
	for _, o := range []api.Object{a, b} {
		if _, err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	cur, _ := s.Get(ctx, api.KindDatacenter, a.Metadata.ID)
	toB := store.Clone(cur.(*api.Datacenter))
	toB.Metadata.Name = "b"
	if _, err := s.Update(ctx, cur, toB); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("rename onto a taken name: want ErrConflict, got %v", err)
	}
	toC := store.Clone(cur.(*api.Datacenter))
	toC.Metadata.Name = "c"
	if _, err := s.Update(ctx, cur, toC); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Lookup(api.KindDatacenter, "a"); ok {
		t.Fatal("old name still resolves")
	}
	if o, ok := c.Lookup(api.KindDatacenter, "c"); !ok || o.GetMeta().ID != a.Metadata.ID {
		t.Fatal("new name does not resolve")
	}
	// The old name is free again.
	if _, err := s.Create(ctx, &api.Datacenter{Metadata: api.ObjectMeta{Name: "a"}}); err != nil {
		t.Fatalf("old name should be free: %v", err)
	}
}

// Folder names are unique among their parent's folders only: two
// parents may each hold a "prod", one parent only one, and a rename or a
// delete frees the name in its scope.
func TestScopedNamesAreUniqueWithinTheirScope(t *testing.T) {
	s, c := newStore(t)
	ctx := context.Background()
	folder := func(name, parent string) *api.Folder {
		return &api.Folder{Metadata: api.ObjectMeta{Name: name}, Spec: api.FolderSpec{Datacenter: api.Ref{ID: "dc"}, Parent: api.Ref{ID: parent}}}
	}
	web, db := folder("web", ""), folder("db", "")
	for _, o := range []*api.Folder{web, db} {
		if _, err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	webProd, dbProd := folder("prod", web.Metadata.ID), folder("prod", db.Metadata.ID)
	for _, o := range []*api.Folder{webProd, dbProd} {
		if _, err := s.Create(ctx, o); err != nil {
			t.Fatalf("prod under %s: %v", o.Spec.Parent.ID, err)
		}
	}
	if _, err := s.Create(ctx, folder("prod", web.Metadata.ID)); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a second prod under web: %v, want ErrConflict", err)
	}
	if _, err := s.Create(ctx, folder("web", "")); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a second web at the top: %v, want ErrConflict", err)
	}
	cur, _ := s.Get(ctx, api.KindFolder, webProd.Metadata.ID)
	renamed := store.Clone(cur.(*api.Folder))
	renamed.Metadata.Name = "staging"
	if _, err := s.Update(ctx, cur, renamed); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if o, ok := c.Lookup(api.KindFolder, web.Metadata.ID+"/staging"); !ok || o.GetMeta().ID != webProd.Metadata.ID {
		t.Fatal("the renamed folder does not resolve in its scope")
	}
	if o, ok := c.Lookup(api.KindFolder, db.Metadata.ID+"/prod"); !ok || o.GetMeta().ID != dbProd.Metadata.ID {
		t.Fatal("the other prod no longer resolves")
	}
	if _, err := s.Create(ctx, folder("prod", web.Metadata.ID)); err != nil {
		t.Fatalf("prod under web after the rename: %v", err)
	}
	if _, err := s.Delete(ctx, dbProd); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, folder("prod", db.Metadata.ID)); err != nil {
		t.Fatalf("prod under db after the delete: %v", err)
	}
}

func TestCacheSyncAndChanges(t *testing.T) {
	s, c := newStore(t)
	ctx := context.Background()
	var mu sync.Mutex
	var seen []store.Change
	_, cancel := c.Subscribe(func(ch store.Change) {
		mu.Lock()
		seen = append(seen, ch)
		mu.Unlock()
	})
	defer cancel()
	dc := &api.Datacenter{Metadata: api.ObjectMeta{Name: "dc1"}}
	if _, err := s.Create(ctx, dc); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(api.KindDatacenter, dc.Metadata.ID); !ok {
		t.Fatal("cache does not have the object after Sync")
	}
	cur, _ := c.Get(api.KindDatacenter, dc.Metadata.ID)
	if _, err := s.Delete(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(api.KindDatacenter, dc.Metadata.ID); ok {
		t.Fatal("cache still has the deleted object")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0].Prev != nil || seen[0].Obj == nil || seen[1].Obj != nil || seen[1].Prev == nil {
		t.Fatalf("want a create then a delete, got %+v", seen)
	}
	// Sync with no object writes since must still return promptly.
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := s.Client().Put(ctx, store.SysPrefix+"x", "y"); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(sctx); err != nil {
		t.Fatalf("sync after a non-object write: %v", err)
	}
}

func TestWaitChange(t *testing.T) {
	s, c := newStore(t)
	ctx := context.Background()
	dc := &api.Datacenter{Metadata: api.ObjectMeta{Name: "dc1"}}
	rev, _ := s.Create(ctx, dc)
	_ = c.WaitRev(ctx, rev)
	cur, _ := c.Get(api.KindDatacenter, dc.Metadata.ID)
	done := make(chan api.Object)
	go func() {
		o, _ := c.WaitChange(ctx, api.KindDatacenter, dc.Metadata.ID, rev)
		done <- o
	}()
	upd := store.Clone(cur.(*api.Datacenter))
	upd.Spec.Description = "changed"
	if _, err := s.Update(ctx, cur, upd); err != nil {
		t.Fatal(err)
	}
	select {
	case o := <-done:
		if o.(*api.Datacenter).Spec.Description != "changed" {
			t.Fatalf("woke with stale object %+v", o)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitChange did not wake on an update")
	}
}

// A name claimed for a task is taken for every other create and rename;
// only a transaction that holds the claim may use it, and once the claim
// goes the name is free.
func TestClaimedNames(t *testing.T) {
	s, _ := newStore(t)
	ctx := context.Background()
	if _, err := s.Txn().ClaimName(api.KindVM, "imp", "task-1").Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Txn().ClaimName(api.KindVM, "imp", "task-2").Commit(ctx); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a second claim of one name: %v", err)
	}
	if _, err := s.Create(ctx, &api.VM{Metadata: api.ObjectMeta{Name: "imp"}}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a create of a claimed name: %v", err)
	}
	other := &api.VM{Metadata: api.ObjectMeta{Name: "other"}}
	if _, err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	o, _ := s.Get(ctx, api.KindVM, other.Metadata.ID)
	renamed := store.Clone(o)
	renamed.GetMeta().Name = "imp"
	if _, err := s.Update(ctx, o, renamed); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a rename to a claimed name: %v", err)
	}
	if _, err := s.Txn().Holds(api.KindVM, "imp", "task-2").Create(&api.VM{Metadata: api.ObjectMeta{Name: "imp"}}).Commit(ctx); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a create by a task that does not hold the claim: %v", err)
	}
	if _, err := s.Txn().Holds(api.KindVM, "imp", "task-1").Create(&api.VM{Metadata: api.ObjectMeta{Name: "imp"}}).Commit(ctx); err != nil {
		t.Fatalf("a create by the claim's holder: %v", err)
	}
	if _, err := s.Txn().ClaimName(api.KindVM, "other", "task-3").Commit(ctx); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("a claim of a name in use: %v", err)
	}
}
