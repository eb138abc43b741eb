// Package state is typed access to the inventory: reads from the server's
// watch cache (Get, Lookup, Each, List) or from etcd (Read), and
// read-modify-write updates that retry when another writer got in first
// (Update). It sits on internal/store and knows nothing of HTTP, tasks or
// hosts; every other control package reads and writes through it.
package state

import (
	"context"
	"errors"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/store"
)

// State is the store and the cache that follows it.
type State struct {
	Store *store.Store
	Cache *store.Cache
}

// ErrUnchanged, returned by an update's fn, means there is nothing to
// write: the update ends without error and without a write.
var ErrUnchanged = errors.New("unchanged")

// kindOf names T's kind (T is a pointer to an api type; Kind does not
// dereference it).
func kindOf[T api.Object]() string {
	var zero T
	return zero.Kind()
}

// Get returns the object of kind T with this ID, as the cache has it.
func Get[T api.Object](st *State, id string) (T, bool) {
	o, ok := st.Cache.Get(kindOf[T](), id)
	if !ok {
		var zero T
		return zero, false
	}
	return o.(T), true
}

// Lookup finds an object of kind T by name or ID in the cache.
func Lookup[T api.Object](st *State, nameOrID string) (T, bool) {
	o, ok := st.Cache.Lookup(kindOf[T](), nameOrID)
	if !ok {
		var zero T
		return zero, false
	}
	return o.(T), true
}

// Find is Lookup with the error a user gets: "vm "x" not found".
func Find[T api.Object](st *State, nameOrID string) (T, error) {
	kind := kindOf[T]()
	if nameOrID == "" {
		var zero T
		return zero, api.Errorf(api.ErrInvalid, "no %s given", api.Singular(kind))
	}
	o, ok := Lookup[T](st, nameOrID)
	if !ok {
		return o, api.Errorf(api.ErrNotFound, "%s %q not found", api.Singular(kind), nameOrID)
	}
	return o, nil
}

// Each calls fn for every cached object of kind T (under the cache's
// read lock: fn must not write).
func Each[T api.Object](st *State, fn func(T)) {
	st.Cache.Each(kindOf[T](), func(o api.Object) { fn(o.(T)) })
}

// List returns the cached objects of kind T that keep says to (all when
// keep is nil).
func List[T api.Object](st *State, keep func(T) bool) []T {
	var out []T
	Each(st, func(o T) {
		if keep == nil || keep(o) {
			out = append(out, o)
		}
	})
	return out
}

// Read returns the object of kind T with this ID from etcd.
func Read[T api.Object](ctx context.Context, st *State, id string) (T, error) {
	o, err := st.Store.Get(ctx, kindOf[T](), id)
	if err != nil {
		var zero T
		return zero, err
	}
	return o.(T), nil
}

// Update changes the object of kind T with this ID: fn edits a copy, which
// commits through txn (a plain or a leader-fenced transaction; nil for
// plain). When another write got in first, the object is read again and fn
// runs again, up to 20 times. fn returning ErrUnchanged ends the update
// without a write.
func Update[T api.Object](ctx context.Context, st *State, txn func() *store.Txn, id string, fn func(T) error) error {
	return UpdateKind(ctx, st, txn, kindOf[T](), id, func(o api.Object) error { return fn(o.(T)) })
}

// UpdateKind is Update for code that holds a kind rather than a type.
func UpdateKind(ctx context.Context, st *State, txn func() *store.Txn, kind, id string, fn func(api.Object) error) error {
	if txn == nil {
		txn = st.Store.Txn
	}
	fresh, raced := false, false
	err := retry.Conflicts(ctx, 20, func() error {
		raced = false
		cur, ok := st.Cache.Get(kind, id)
		if !ok || fresh {
			var err error
			if cur, err = st.Store.Get(ctx, kind, id); err != nil {
				return retry.Stop(err)
			}
		}
		fresh = true // after a conflict, read etcd: the cache may lag
		upd := store.Clone(cur)
		if err := fn(upd); err != nil {
			if errors.Is(err, ErrUnchanged) {
				return nil
			}
			return retry.Stop(err)
		}
		_, err := txn().Update(cur, upd).Commit(ctx)
		raced = errors.Is(err, api.ErrConflict)
		return err
	})
	if raced {
		return api.Errorf(api.ErrConflict, "%s %s keeps changing; gave up updating it", api.Singular(kind), id)
	}
	return err
}
