package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
)

// Change is one object put or deleted, as seen by the watch.
type Change struct {
	Rev  int64
	Time time.Time // when this server saw it
	Kind string
	ID   string
	Obj  api.Object // nil when deleted
	Prev api.Object // nil when created
}

// Cache holds every object in memory, kept current by one etcd watch. Reads
// that must see the latest writes call Sync first. Objects handed out are
// shared: treat them as read-only and Clone before changing.
type Cache struct {
	s   *Store
	log *slog.Logger

	mu      sync.RWMutex
	objs    map[string]map[string]api.Object
	names   map[string]map[string]string
	rev     int64
	revCh   chan struct{}            // closed when rev advances
	waiters map[string]chan struct{} // kind/id → closed when that object changes
	subs    map[int]func(Change)
	nextSub int
	// observers see every change under the write lock, before the new
	// revision is visible: derived state they keep is never behind Sync.
	observers []func(Change)
}

func NewCache(s *Store, log *slog.Logger) *Cache {
	return &Cache{s: s, log: log, revCh: make(chan struct{}), waiters: map[string]chan struct{}{}, subs: map[int]func(Change){}}
}

// Observe registers fn to see every change (the initial load as creations)
// while the cache is locked; fn must be quick and must not call the cache.
// Register observers before Start.
func (c *Cache) Observe(fn func(Change)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observers = append(c.observers, fn)
}

// Start loads every object and keeps the cache current until ctx ends.
func (c *Cache) Start(ctx context.Context) error {
	if err := c.load(ctx, false); err != nil {
		return err
	}
	go c.run(ctx)
	return nil
}

func (c *Cache) load(ctx context.Context, emit bool) error {
	resp, err := c.s.cli.Get(ctx, objPrefix, clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("load inventory from etcd: %w", err)
	}
	objs := map[string]map[string]api.Object{}
	names := map[string]map[string]string{}
	for k := range factories {
		objs[k] = map[string]api.Object{}
		names[k] = map[string]string{}
	}
	for _, kv := range resp.Kvs {
		kind, id, ok := parseObjKey(string(kv.Key))
		if !ok || factories[kind] == nil {
			continue
		}
		obj, err := decode(kind, kv.Value, kv.ModRevision)
		if err != nil {
			c.log.Error("skipping undecodable object", "key", string(kv.Key), "err", err)
			continue
		}
		objs[kind][id] = obj
		if n := indexName(obj); n != "" {
			names[kind][n] = id
		}
	}
	var changes []Change
	c.mu.Lock()
	now := time.Now()
	if !emit {
		for kind, m := range objs {
			for id, o := range m {
				for _, fn := range c.observers {
					fn(Change{Rev: o.GetMeta().Revision, Time: now, Kind: kind, ID: id, Obj: o})
				}
			}
		}
	}
	if emit { // after a compaction gap: report what differs
		for kind, m := range objs {
			for id, o := range m {
				if p := c.objs[kind][id]; p == nil || p.GetMeta().Revision != o.GetMeta().Revision {
					changes = append(changes, Change{Rev: o.GetMeta().Revision, Time: now, Kind: kind, ID: id, Obj: o, Prev: p})
				}
			}
			for id, p := range c.objs[kind] {
				if m[id] == nil {
					changes = append(changes, Change{Rev: resp.Header.Revision, Time: now, Kind: kind, ID: id, Prev: p})
				}
			}
		}
	}
	for _, ch := range changes {
		for _, fn := range c.observers {
			fn(ch)
		}
	}
	c.objs, c.names = objs, names
	c.rev = resp.Header.Revision
	c.mu.Unlock()
	c.publish(changes)
	return nil
}

func (c *Cache) run(ctx context.Context) {
	for ctx.Err() == nil {
		c.mu.RLock()
		from := c.rev + 1
		c.mu.RUnlock()
		wch := c.s.cli.Watch(clientv3.WithRequireLeader(ctx), Root, clientv3.WithPrefix(), clientv3.WithRev(from), clientv3.WithProgressNotify())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				if errors.Is(err, rpctypes.ErrCompacted) {
					c.log.Warn("watch fell behind compaction; reloading inventory", "from", from)
					if err := c.load(ctx, true); err != nil {
						c.log.Error("reload inventory", "err", err)
					}
				} else {
					c.log.Warn("inventory watch failed; restarting it", "err", err)
				}
				break
			}
			c.apply(resp)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (c *Cache) apply(resp clientv3.WatchResponse) {
	now := time.Now()
	var changes []Change
	c.mu.Lock()
	for _, ev := range resp.Events {
		kind, id, ok := parseObjKey(string(ev.Kv.Key))
		if !ok || c.objs[kind] == nil {
			continue
		}
		prev := c.objs[kind][id]
		ch := Change{Rev: ev.Kv.ModRevision, Time: now, Kind: kind, ID: id, Prev: prev}
		if prev != nil && indexName(prev) != "" && c.names[kind][indexName(prev)] == id {
			delete(c.names[kind], indexName(prev))
		}
		if ev.Type == clientv3.EventTypeDelete {
			delete(c.objs[kind], id)
			ch.Rev = resp.Header.Revision
			if ev.Kv.ModRevision > 0 {
				ch.Rev = ev.Kv.ModRevision
			}
		} else {
			obj, err := decode(kind, ev.Kv.Value, ev.Kv.ModRevision)
			if err != nil {
				c.log.Error("skipping undecodable object", "key", string(ev.Kv.Key), "err", err)
				continue
			}
			c.objs[kind][id] = obj
			if n := indexName(obj); n != "" {
				c.names[kind][n] = id
			}
			ch.Obj = obj
		}
		if w, ok := c.waiters[kind+"/"+id]; ok {
			close(w)
			delete(c.waiters, kind+"/"+id)
		}
		for _, fn := range c.observers {
			fn(ch)
		}
		changes = append(changes, ch)
	}
	if resp.Header.Revision > c.rev {
		c.rev = resp.Header.Revision
		close(c.revCh)
		c.revCh = make(chan struct{})
	}
	c.mu.Unlock()
	c.publish(changes)
}

func (c *Cache) publish(changes []Change) {
	if len(changes) == 0 {
		return
	}
	c.mu.RLock()
	subs := make([]func(Change), 0, len(c.subs))
	for _, f := range c.subs {
		subs = append(subs, f)
	}
	c.mu.RUnlock()
	for _, ch := range changes {
		for _, f := range subs {
			f(ch)
		}
	}
}

// Subscribe calls fn, from the watch goroutine, for every change after the
// returned revision. fn must not block. The returned func unsubscribes.
func (c *Cache) Subscribe(fn func(Change)) (rev int64, cancel func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextSub
	c.nextSub++
	c.subs[id] = fn
	return c.rev, func() {
		c.mu.Lock()
		delete(c.subs, id)
		c.mu.Unlock()
	}
}

// Rev is the store revision the cache reflects.
func (c *Cache) Rev() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rev
}

// WaitRev waits until the cache reflects revision rev.
func (c *Cache) WaitRev(ctx context.Context, rev int64) error {
	nudge := time.NewTimer(20 * time.Millisecond)
	defer nudge.Stop()
	for {
		c.mu.RLock()
		cur, ch := c.rev, c.revCh
		c.mu.RUnlock()
		if cur >= rev {
			return nil
		}
		select {
		case <-ch:
		case <-nudge.C:
			// Nothing under /vdc/ changed since; ask etcd to tell the watch
			// the current revision.
			_ = c.s.cli.RequestProgress(ctx)
			nudge.Reset(100 * time.Millisecond)
		case <-ctx.Done():
			return fmt.Errorf("wait for inventory cache to reach revision %d (at %d): %w", rev, cur, ctx.Err())
		}
	}
}

// Sync waits until the cache holds every write committed before the call,
// so a read after Sync sees the caller's own earlier writes.
func (c *Cache) Sync(ctx context.Context) error {
	rev, err := c.s.Revision(ctx)
	if err != nil {
		return err
	}
	return c.WaitRev(ctx, rev)
}

// Get returns the object of a kind with an ID.
func (c *Cache) Get(kind, id string) (api.Object, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	o, ok := c.objs[kind][id]
	return o, ok
}

// Lookup finds an object by name or ID (an object whose name is scoped,
// a folder, by its scope and name: see indexName).
func (c *Cache) Lookup(kind, nameOrID string) (api.Object, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if id, ok := c.names[kind][nameOrID]; ok {
		return c.objs[kind][id], true
	}
	o, ok := c.objs[kind][nameOrID]
	return o, ok
}

// List returns every object of a kind, in no particular order.
func (c *Cache) List(kind string) []api.Object {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]api.Object, 0, len(c.objs[kind]))
	for _, o := range c.objs[kind] {
		out = append(out, o)
	}
	return out
}

// Each calls fn for every object of a kind under the read lock; fn must be
// quick and must not call back into the cache.
func (c *Cache) Each(kind string, fn func(api.Object)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, o := range c.objs[kind] {
		fn(o)
	}
}

// Count returns how many objects of a kind there are.
func (c *Cache) Count(kind string) int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.objs[kind])
}

// WaitChange waits until the object changes past revision after (or is
// deleted) and returns it; nil with ErrNotFound when it is gone.
func (c *Cache) WaitChange(ctx context.Context, kind, id string, after int64) (api.Object, error) {
	for {
		c.mu.Lock()
		o, ok := c.objs[kind][id]
		if !ok {
			c.mu.Unlock()
			return nil, api.Errorf(api.ErrNotFound, "%s %s not found", singular(kind), id)
		}
		if o.GetMeta().Revision > after {
			c.mu.Unlock()
			return o, nil
		}
		key := kind + "/" + id
		w, ok := c.waiters[key]
		if !ok {
			w = make(chan struct{})
			c.waiters[key] = w
		}
		c.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return o, ctx.Err()
		}
	}
}
