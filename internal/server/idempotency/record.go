package idempotency

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// record is what etcd keeps of a key.
type record struct {
	Task string `json:"task,omitempty"`
	// Status is the first answer's status; Sealed its body when it was no
	// task (nonce and AES-GCM ciphertext).
	Status  int       `json:"status"`
	Sealed  []byte    `json:"sealed,omitempty"`
	Request string    `json:"request"` // hash of what was asked
	Route   string    `json:"route"`   // "POST /api/v1/vms", for messages
	Created time.Time `json:"created"`
}

// repeated returns the answer to an earlier request with the claim's key,
// nil if there was none, and an error if the key served another request.
func (k *Keys) repeated(ctx context.Context, c *claim) (*replay, error) {
	resp, err := k.store.Client().Get(ctx, c.etcdKey)
	if err != nil {
		return nil, api.Errorf(api.ErrUnavailable, "look up %s %q: %v", Header, c.key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var rec record
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, api.Errorf(api.ErrConflict, "%s %q: unreadable record: %v", Header, c.key, err)
	}
	if rec.Request != c.request {
		return nil, api.Errorf(api.ErrUnprocessable, "%s %q was already used at %s for a different request (%s); use a new key for a new request",
			Header, c.key, rec.Created.Format(time.RFC3339), rec.Route)
	}
	if rec.Task == "" {
		body, err := c.open(rec.Sealed)
		if err != nil {
			return nil, api.Errorf(api.ErrConflict, "%s %q: cannot read the answer it recorded: %v", Header, c.key, err)
		}
		return &replay{status: rec.Status, body: body}, nil
	}
	o, err := k.store.Get(ctx, api.KindTask, rec.Task)
	if errors.Is(err, api.ErrNotFound) {
		return nil, api.Errorf(api.ErrConflict, "%s %q was used for task %s, which no longer exists", Header, c.key, rec.Task)
	}
	if err != nil {
		return nil, err
	}
	// The caller's next read (on this server) must see it, as after submit.
	if err := k.cache.WaitRev(ctx, o.GetMeta().Revision); err != nil {
		return nil, err
	}
	return &replay{status: rec.Status, task: o.(*api.Task)}, nil
}

// Claim adds the request's key, if it brought one, to the transaction
// that records its task t (tasks.Guard).
func (k *Keys) Claim(ctx context.Context, txn *store.Txn, t *api.Task) error {
	status := http.StatusAccepted // as the server answers a task
	if api.TaskDone(t.State) {
		status = http.StatusOK
	}
	return k.claim(ctx, txn, record{Task: t.Metadata.ID, Status: status})
}

// claimResponse adds the request's key, if it brought one, to the
// transaction of a call that records no task, with the answer it will
// give.
func (k *Keys) claimResponse(ctx context.Context, txn *store.Txn, status int, v any) error {
	c := claimOf(ctx)
	if c == nil || c.used.Load() {
		return nil
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v) // as writeJSON writes it
	sealed, err := c.seal(buf.Bytes())
	if err != nil {
		return err
	}
	return k.claim(ctx, txn, record{Status: status, Sealed: sealed})
}

func (k *Keys) claim(ctx context.Context, txn *store.Txn, rec record) error {
	c := claimOf(ctx)
	if c == nil || c.used.Load() {
		return nil
	}
	lease, err := k.leases.lease(ctx, k.store.Client())
	if err != nil {
		return api.Errorf(api.ErrUnavailable, "record %s: %v", Header, err)
	}
	rec.Request, rec.Route, rec.Created = c.request, c.route, time.Now().UTC()
	b, _ := json.Marshal(rec)
	txn.If(clientv3.Compare(clientv3.CreateRevision(c.etcdKey), "=", 0),
		api.Errorf(api.ErrConflict, "%s %q is being used by another request at the same time", Header, c.key)).
		PutRaw(c.etcdKey, string(b), clientv3.WithLease(lease))
	return nil
}

// Committed notes that the transaction with the request's key went in
// (tasks.Guard).
func (k *Keys) Committed(ctx context.Context) {
	if c := claimOf(ctx); c != nil {
		c.used.Store(true)
	}
}

// settle decides what a failed commit of a request with a key means: a
// repeat of it that won the race has recorded the answer to give;
// otherwise the request failed with err.
func (k *Keys) settle(ctx context.Context, err error) (*replay, error) {
	c := claimOf(ctx)
	if c == nil || c.used.Load() {
		return nil, err
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		k.leases.forget()
		return nil, api.Errorf(api.ErrUnavailable, "record %s: its lease expired; retry: %v", Header, err)
	}
	rep, rerr := k.repeated(ctx, c)
	switch {
	case rerr != nil:
		return nil, rerr
	case rep != nil:
		c.settled.Store(rep)
		return rep, nil
	}
	return nil, err
}

// Settle is settle for a submit, which answers with a task (tasks.Guard).
func (k *Keys) Settle(ctx context.Context, err error) (*api.Task, error) {
	rep, err := k.settle(ctx, err)
	if err != nil {
		return nil, err
	}
	if rep.task == nil {
		return nil, api.Errorf(api.ErrUnprocessable, "%s was used for a request that records no task", Header)
	}
	return rep.task, nil
}

// CommitResponse commits the transaction of a call that records no task
// and answers it: with v and status, or, when a repeat of the request won
// the race, with that one's answer. The error is the handler's to return;
// what says what the commit was doing.
func (k *Keys) CommitResponse(w http.ResponseWriter, ctx context.Context, txn *store.Txn, status int, v any, what string) error {
	if err := k.claimResponse(ctx, txn, status, v); err != nil {
		return err
	}
	if _, err := txn.Commit(ctx); err != nil {
		rep, err := k.settle(ctx, err)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		rep.write(w)
		return nil
	}
	k.Committed(ctx)
	writeJSON(w, status, v)
	return nil
}

// The sealing key is derived from the Idempotency-Key and the caller, as
// the record's etcd key is, but otherwise: one does not give the other.
func (c *claim) aead() (cipher.AEAD, error) {
	k := sha256.Sum256([]byte("vdc idempotent answer\x00" + c.user + "\x00" + c.key))
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (c *claim) seal(plain []byte) ([]byte, error) {
	g, err := c.aead()
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return g.Seal(nonce, nonce, plain, []byte(c.etcdKey)), nil
}

func (c *claim) open(sealed []byte) ([]byte, error) {
	g, err := c.aead()
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize() {
		return nil, errors.New("too short")
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], []byte(c.etcdKey))
}

// leases hands out the etcd lease keys are written with, granting a new
// one every leaseFor.
type leases struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
}

func (l *leases) lease(ctx context.Context, cli *clientv3.Client) (clientv3.LeaseID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != 0 && time.Since(l.granted) < leaseFor {
		return l.id, nil
	}
	resp, err := cli.Grant(ctx, int64((ttl + leaseFor).Seconds()))
	if err != nil {
		return 0, err
	}
	l.id, l.granted = resp.ID, time.Now()
	return l.id, nil
}

func (l *leases) forget() {
	l.mu.Lock()
	l.id = 0
	l.mu.Unlock()
}
