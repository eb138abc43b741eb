package store

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
)

const (
	Root       = "/vdc/"
	objPrefix  = Root + "obj/"
	namePrefix = Root + "name/"
	// SysPrefix is for server-private records that are not API objects.
	SysPrefix = Root + "sys/"
	// claimPrefix holds what unfinished tasks reserved (see Txn.Claim).
	claimPrefix = SysPrefix + "claims/"
)

var factories = map[string]func() api.Object{
	api.KindDatacenter: func() api.Object { return new(api.Datacenter) },
	api.KindCluster:    func() api.Object { return new(api.Cluster) },
	api.KindHost:       func() api.Object { return new(api.Host) },
	api.KindDatastore:  func() api.Object { return new(api.Datastore) },
	api.KindPortGroup:  func() api.Object { return new(api.PortGroup) },
	api.KindSwitch:     func() api.Object { return new(api.Switch) },
	api.KindVM:         func() api.Object { return new(api.VM) },
	api.KindTask:       func() api.Object { return new(api.Task) },
	api.KindImage:      func() api.Object { return new(api.Image) },
	api.KindRole:       func() api.Object { return new(api.Role) },
	api.KindPermission: func() api.Object { return new(api.Permission) },
	api.KindUser:       func() api.Object { return new(api.User) },
	api.KindGroup:      func() api.Object { return new(api.Group) },
	api.KindFolder:     func() api.Object { return new(api.Folder) },
}

// Kinds lists every stored kind.
func Kinds() []string {
	out := make([]string, 0, len(factories))
	for k := range factories {
		out = append(out, k)
	}
	return out
}

var singular = api.Singular

func objKey(kind, id string) string    { return objPrefix + kind + "/" + id }
func nameKey(kind, name string) string { return namePrefix + kind + "/" + name }

// scoped is an object whose name is unique only within a scope (a
// folder's: among its parent's folders).
type scoped interface{ NameScope() string }

// indexName is what obj's name is indexed by, in etcd and in the cache:
// its name, or for a scoped object its scope and name ("<parent
// ID>/prod"), so that objects named alike live in different scopes.
// Cache.Lookup finds a scoped object by that key (or its ID) only.
func indexName(obj api.Object) string {
	n := obj.GetMeta().Name
	if s, ok := obj.(scoped); ok && n != "" {
		return ScopedName(s.NameScope(), n)
	}
	return n
}

// ScopedName is the key Cache.Lookup finds an object with this name in
// this scope by.
func ScopedName(scope, name string) string { return scope + "/" + name }

// ClaimKey is where a task's claim is kept (api.Task.Claims lists them).
func ClaimKey(claim string) string { return claimPrefix + claim }

// NameClaim is the claim on an object's name that a task takes when it
// is asked for and makes the object later (an import, its VMs): no other
// object can be made or renamed with that name meanwhile.
func NameClaim(kind, name string) string { return "names/" + kind + "/" + name }

// NewID returns a new object ID: a time-ordered UUID, so IDs sort by creation.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Store reads and writes objects in etcd.
type Store struct {
	cli *clientv3.Client
}

func New(cli *clientv3.Client) *Store { return &Store{cli: cli} }

// Client is the underlying etcd client, for leases, elections and sys keys.
func (s *Store) Client() *clientv3.Client { return s.cli }

// decode turns a stored value into an object of its kind with its revision set.
func decode(kind string, kv []byte, modRev int64) (api.Object, error) {
	f, ok := factories[kind]
	if !ok {
		return nil, fmt.Errorf("decode: unknown kind %q", kind)
	}
	obj := f()
	if err := json.Unmarshal(kv, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", singular(kind), err)
	}
	obj.GetMeta().Revision = modRev
	return obj, nil
}

// parseObjKey splits /vdc/obj/<kind>/<id>.
func parseObjKey(key string) (kind, id string, ok bool) {
	rest, found := strings.CutPrefix(key, objPrefix)
	if !found {
		return "", "", false
	}
	kind, id, ok = strings.Cut(rest, "/")
	return kind, id, ok
}

// Get reads one object by ID.
func (s *Store) Get(ctx context.Context, kind, id string) (api.Object, error) {
	resp, err := s.cli.Get(ctx, objKey(kind, id))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", singular(kind), id, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, api.Errorf(api.ErrNotFound, "%s %s not found", singular(kind), id)
	}
	return decode(kind, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
}

// List reads every object of a kind, and the revision it read at.
func (s *Store) List(ctx context.Context, kind string) ([]api.Object, int64, error) {
	resp, err := s.cli.Get(ctx, objPrefix+kind+"/", clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", kind, err)
	}
	out := make([]api.Object, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		obj, err := decode(kind, kv.Value, kv.ModRevision)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, obj)
	}
	return out, resp.Header.Revision, nil
}

// Revision returns the store's current revision.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, SysPrefix+"revision-probe", clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read store revision: %w", err)
	}
	return resp.Header.Revision, nil
}

// Txn starts a transaction; add writes to it and Commit.
func (s *Store) Txn() *Txn { return &Txn{s: s} }

// Create stores a new object (shorthand for a one-write transaction).
func (s *Store) Create(ctx context.Context, obj api.Object) (int64, error) {
	return s.Txn().Create(obj).Commit(ctx)
}

// Update replaces old with obj if old is still the stored version.
func (s *Store) Update(ctx context.Context, old, obj api.Object) (int64, error) {
	return s.Txn().Update(old, obj).Commit(ctx)
}

// Delete removes obj if it is still at the revision it was read at.
func (s *Store) Delete(ctx context.Context, obj api.Object) (int64, error) {
	return s.Txn().Delete(obj).Commit(ctx)
}

// check is one precondition of a transaction with the message to give when
// it does not hold.
type check struct {
	cmp clientv3.Cmp
	// holds re-evaluates the condition after a failed commit to find out
	// which one failed.
	holds func(ctx context.Context) (bool, error)
	err   error
}

// Txn is a set of writes that happen together or not at all.
type Txn struct {
	s      *Store
	checks []check
	ops    []clientv3.Op
	now    time.Time
	err    error
	// held are the name claims this transaction's writer holds.
	held map[string]bool
}

func (t *Txn) stamp() time.Time {
	if t.now.IsZero() {
		t.now = time.Now().UTC()
	}
	return t.now
}

func (t *Txn) absent(key string, err error) {
	t.checks = append(t.checks, check{
		cmp: clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
		holds: func(ctx context.Context) (bool, error) {
			r, e := t.s.cli.Get(ctx, key, clientv3.WithCountOnly())
			return e == nil && r.Count == 0, e
		},
		err: err,
	})
}

func (t *Txn) atRevision(key string, rev int64, err error) {
	t.checks = append(t.checks, check{
		cmp: clientv3.Compare(clientv3.ModRevision(key), "=", rev),
		holds: func(ctx context.Context) (bool, error) {
			r, e := t.s.cli.Get(ctx, key)
			if e != nil {
				return false, e
			}
			return len(r.Kvs) == 1 && r.Kvs[0].ModRevision == rev, nil
		},
		err: err,
	})
}

func (t *Txn) put(obj api.Object) {
	m := obj.GetMeta()
	rev := m.Revision
	m.Revision = 0 // the revision lives in etcd, not in the value
	b, err := json.Marshal(obj)
	m.Revision = rev
	if err != nil {
		t.err = fmt.Errorf("encode %s %s: %w", singular(obj.Kind()), m.Name, err)
		return
	}
	t.ops = append(t.ops, clientv3.OpPut(objKey(obj.Kind(), m.ID), string(b)))
}

// Create adds a new object: it gets an ID and creation time if it has none,
// and its name must be free.
func (t *Txn) Create(obj api.Object) *Txn {
	m := obj.GetMeta()
	if m.ID == "" {
		m.ID = NewID()
	}
	if m.Created.IsZero() {
		m.Created = t.stamp()
	}
	if m.Generation == 0 {
		m.Generation = 1
	}
	kind := obj.Kind()
	t.absent(objKey(kind, m.ID), api.Errorf(api.ErrConflict, "%s %s already exists", singular(kind), m.ID))
	if m.Name != "" {
		t.takeName(obj)
	}
	t.put(obj)
	return t
}

// takeName indexes obj's name, which must be free (in its scope), and not
// claimed by a task (but the one this transaction writes for).
func (t *Txn) takeName(obj api.Object) {
	kind, name, key := obj.Kind(), obj.GetMeta().Name, indexName(obj)
	where := ""
	if key != name {
		where = " there"
	}
	t.absent(nameKey(kind, key), api.Errorf(api.ErrConflict, "a %s named %q already exists%s", singular(kind), name, where))
	if c := NameClaim(kind, key); !t.held[c] {
		t.absent(ClaimKey(c), api.Errorf(api.ErrConflict, "a %s named %q is being made by a task that has not ended yet", singular(kind), name))
	}
	t.ops = append(t.ops, clientv3.OpPut(nameKey(kind, key), obj.GetMeta().ID))
}

// ClaimName claims an object's name for a task (holder) that makes the
// object later: the name must be free now, and stays so until the task's
// claim goes (its Create, in a transaction that Holds the claim, may then
// take it).
func (t *Txn) ClaimName(kind, name, holder string) *Txn {
	t.absent(nameKey(kind, name), api.Errorf(api.ErrConflict, "a %s named %q already exists", singular(kind), name))
	return t.Claim(ClaimKey(NameClaim(kind, name)), holder, api.Errorf(api.ErrConflict, "a %s named %q is being made by another task", singular(kind), name))
}

// Holds lets the transaction's objects take a name that holder claimed
// (see ClaimName), provided the claim is still holder's.
func (t *Txn) Holds(kind, name, holder string) *Txn {
	c := NameClaim(kind, name)
	if t.held == nil {
		t.held = map[string]bool{}
	}
	t.held[c] = true
	t.checks = append(t.checks, check{
		cmp: clientv3.Compare(clientv3.Value(ClaimKey(c)), "=", holder),
		err: api.Errorf(api.ErrConflict, "the claim on the %s name %q is no longer held by task %s", singular(kind), name, holder),
	})
	return t
}

// Unchanged makes the transaction depend on obj being still at the
// revision it was read at: what was decided from it still holds. err
// says what changed otherwise.
func (t *Txn) Unchanged(obj api.Object, err error) *Txn {
	t.atRevision(objKey(obj.Kind(), obj.GetMeta().ID), obj.GetMeta().Revision, err)
	return t
}

// Update writes obj in place of old, failing with ErrConflict if the stored
// object is no longer at old's revision. A changed name moves the name index.
func (t *Txn) Update(old, obj api.Object) *Txn {
	om, m := old.GetMeta(), obj.GetMeta()
	kind := obj.Kind()
	if om.ID != m.ID {
		t.err = fmt.Errorf("update %s: ID changed from %s to %s", singular(kind), om.ID, m.ID)
		return t
	}
	t.atRevision(objKey(kind, m.ID), om.Revision, api.Errorf(api.ErrConflict,
		"%s %q was changed by someone else since revision %d; read it again and retry", singular(kind), om.Name, om.Revision))
	if key, old := indexName(obj), indexName(old); key != old {
		if key != "" {
			t.takeName(obj)
		}
		if old != "" {
			t.ops = append(t.ops, clientv3.OpDelete(nameKey(kind, old)))
		}
	}
	t.put(obj)
	return t
}

// Delete removes obj and its name; with a revision set, only if unchanged.
func (t *Txn) Delete(obj api.Object) *Txn {
	m := obj.GetMeta()
	kind := obj.Kind()
	if m.Revision > 0 {
		t.atRevision(objKey(kind, m.ID), m.Revision, api.Errorf(api.ErrConflict,
			"%s %q was changed by someone else since revision %d; read it again and retry", singular(kind), m.Name, m.Revision))
	}
	t.ops = append(t.ops, clientv3.OpDelete(objKey(kind, m.ID)))
	if key := indexName(obj); key != "" {
		t.ops = append(t.ops, clientv3.OpDelete(nameKey(kind, key)))
	}
	return t
}

// Claim creates a key that must not exist yet (a unique index entry such
// as a MAC address, or a task's claim, see ClaimKey); err says what is
// taken when it does.
func (t *Txn) Claim(key, val string, err error) *Txn {
	t.absent(key, err)
	t.ops = append(t.ops, clientv3.OpPut(key, val))
	return t
}

// If adds a raw precondition, e.g. that this server still holds leadership.
func (t *Txn) If(cmp clientv3.Cmp, err error) *Txn {
	t.checks = append(t.checks, check{cmp: cmp, err: err})
	return t
}

// PutRaw and DeleteRaw write keys that are not objects.
func (t *Txn) PutRaw(key, val string, opts ...clientv3.OpOption) *Txn {
	t.ops = append(t.ops, clientv3.OpPut(key, val, opts...))
	return t
}

func (t *Txn) DeleteRaw(key string) *Txn {
	t.ops = append(t.ops, clientv3.OpDelete(key))
	return t
}

// Commit applies the writes if every precondition holds and returns the
// new revision. A failed precondition is an ErrConflict naming what changed.
func (t *Txn) Commit(ctx context.Context) (int64, error) {
	if t.err != nil {
		return 0, t.err
	}
	cmps := make([]clientv3.Cmp, len(t.checks))
	for i, c := range t.checks {
		cmps[i] = c.cmp
	}
	resp, err := t.s.cli.Txn(ctx).If(cmps...).Then(t.ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("store write: %w", err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	for _, c := range t.checks {
		if c.holds == nil {
			continue
		}
		ok, err := c.holds(ctx)
		if err != nil {
			return 0, fmt.Errorf("store write failed a precondition; checking which: %w", err)
		}
		if !ok {
			return 0, c.err
		}
	}
	// Only raw guards are left to blame (or the state changed back).
	for _, c := range t.checks {
		if c.holds == nil {
			return 0, c.err
		}
	}
	return 0, api.Errorf(api.ErrConflict, "the objects changed while being written; retry")
}
