package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// Idempotency keys. A client that sends a state-changing call with an
// Idempotency-Key header and loses the answer (a reset connection, a
// server restart) sends it again with the same key: the server answers
// with the task the first call recorded instead of doing it twice. The key
// is stored with the task's ID, in the same transaction as the task, for
// idempotencyTTL; with it a hash of the request (method, path, query,
// caller, body), so that the key reused for another request is refused.
const (
	IdempotencyHeader = "Idempotency-Key"
	idempotencyPrefix = store.SysPrefix + "idempotency/"
	// Keys live 24 to 25 hours: one lease serves the keys of an hour.
	idempotencyTTL      = 24 * time.Hour
	idempotencyLeaseFor = time.Hour
	maxIdempotencyKey   = 255
)

type idempotencyRecord struct {
	Task    string    `json:"task"`
	Request string    `json:"request"` // hash of what was asked
	Route   string    `json:"route"`   // "POST /api/v1/vms", for messages
	Created time.Time `json:"created"`
}

// idempotencyClaim is a key a request brings, before its task is recorded.
type idempotencyClaim struct {
	key     string // as sent
	etcdKey string
	request string
	route   string
}

type claimKey struct{}

func claimOf(ctx context.Context) *idempotencyClaim {
	c, _ := ctx.Value(claimKey{}).(*idempotencyClaim)
	return c
}

// takesIdempotencyKey says which routes take the header: those that
// record a task for a JSON (or no) body. Cancel records none; uploads
// stream their body, which cannot be kept to compare.
func takesIdempotencyKey(r route) bool {
	_, task := r.reply.(api.Task)
	return task && (r.method == http.MethodPost || r.method == http.MethodPatch || r.method == http.MethodDelete) &&
		!strings.HasSuffix(r.path, "/cancel")
}

func checkIdempotencyKey(k string) error {
	if len(k) > maxIdempotencyKey {
		return api.Errorf(api.ErrInvalid, "%s must be at most %d characters, got %d", IdempotencyHeader, maxIdempotencyKey, len(k))
	}
	for _, c := range []byte(k) {
		if c < 0x21 || c > 0x7e {
			return api.Errorf(api.ErrInvalid, "%s must be printable ASCII without spaces (a UUID, say), got %q", IdempotencyHeader, k)
		}
	}
	return nil
}

// refuseIdempotencyKey is for the state-changing routes that do not take
// the header: a client counting on it must not be silently ignored.
func refuseIdempotencyKey(rt route, next http.HandlerFunc) http.HandlerFunc {
	if rt.method == http.MethodGet {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(IdempotencyHeader) != "" {
			fail(w, api.Errorf(api.ErrInvalid, "%s %s does not take an %s header (it records no task a repeat could return)",
				rt.method, rt.path, IdempotencyHeader))
			return
		}
		next(w, r)
	}
}

// idempotent answers a repeat of a request with the task the first one
// recorded, and otherwise hands the request's claim to submit.
func (s *Server) idempotent(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get(IdempotencyHeader)
		if key == "" {
			next(w, r)
			return
		}
		if err := checkIdempotencyKey(key); err != nil {
			fail(w, err)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			fail(w, badJSON(err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		user := userOf(r.Context())
		h := sha256.New()
		for _, part := range []string{r.Method, r.URL.EscapedPath(), r.URL.Query().Encode(), user} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		h.Write(body)
		c := &idempotencyClaim{
			key:     key,
			etcdKey: idempotencyPrefix + hashSecret(user+"\x00"+key),
			request: hex.EncodeToString(h.Sum(nil)),
			route:   r.Method + " " + r.URL.Path,
		}
		t, err := s.repeated(r.Context(), c)
		if err != nil {
			fail(w, err)
			return
		}
		if t != nil {
			w.Header().Set("Idempotent-Replayed", "true")
			replyTask(w, t)
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), claimKey{}, c)))
	}
}

// repeated returns the task of an earlier request with the claim's key,
// nil if there was none, and an error if the key served another request.
func (s *Server) repeated(ctx context.Context, c *idempotencyClaim) (*api.Task, error) {
	resp, err := s.cli.Get(ctx, c.etcdKey)
	if err != nil {
		return nil, api.Errorf(api.ErrUnavailable, "look up %s %q: %v", IdempotencyHeader, c.key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	var rec idempotencyRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return nil, api.Errorf(api.ErrConflict, "%s %q: unreadable record: %v", IdempotencyHeader, c.key, err)
	}
	if rec.Request != c.request {
		return nil, api.Errorf(api.ErrUnprocessable, "%s %q was already used at %s for a different request (%s, task %s); use a new key for a new request",
			IdempotencyHeader, c.key, rec.Created.Format(time.RFC3339), rec.Route, rec.Task)
	}
	o, err := s.store.Get(ctx, api.KindTask, rec.Task)
	if errors.Is(err, api.ErrNotFound) {
		return nil, api.Errorf(api.ErrConflict, "%s %q was used for task %s, which no longer exists", IdempotencyHeader, c.key, rec.Task)
	}
	if err != nil {
		return nil, err
	}
	// The caller's next read (on this server) must see it, as after submit.
	if err := s.cache.WaitRev(ctx, o.GetMeta().Revision); err != nil {
		return nil, err
	}
	return o.(*api.Task), nil
}

// claimIdempotencyKey adds the request's key, if it brought one, to the
// transaction that records its task t.
func (s *Server) claimIdempotencyKey(ctx context.Context, txn *store.Txn, t *api.Task) error {
	c := claimOf(ctx)
	if c == nil {
		return nil
	}
	lease, err := s.idem.lease(ctx, s.cli)
	if err != nil {
		return api.Errorf(api.ErrUnavailable, "record %s: %v", IdempotencyHeader, err)
	}
	b, _ := json.Marshal(idempotencyRecord{Task: t.Metadata.ID, Request: c.request, Route: c.route, Created: time.Now().UTC()})
	txn.If(clientv3.Compare(clientv3.CreateRevision(c.etcdKey), "=", 0),
		api.Errorf(api.ErrConflict, "%s %q is being used by another request at the same time", IdempotencyHeader, c.key)).
		PutRaw(c.etcdKey, string(b), clientv3.WithLease(lease))
	return nil
}

// settleClaim decides what a failed commit of a request with a key
// means: a repeat of it that won the race has recorded the task to answer
// with; otherwise the request failed.
func (s *Server) settleClaim(ctx context.Context, err error) (*api.Task, error) {
	c := claimOf(ctx)
	if c == nil {
		return nil, err
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.idem.forget()
		return nil, api.Errorf(api.ErrUnavailable, "record %s: its lease expired; retry: %v", IdempotencyHeader, err)
	}
	t, rerr := s.repeated(ctx, c)
	switch {
	case rerr != nil:
		return nil, rerr
	case t != nil:
		return t, nil
	}
	return nil, err
}

// idempotencyLeases hands out the etcd lease keys are written with,
// granting a new one every idempotencyLeaseFor.
type idempotencyLeases struct {
	mu      sync.Mutex
	id      clientv3.LeaseID
	granted time.Time
}

func (l *idempotencyLeases) lease(ctx context.Context, cli *clientv3.Client) (clientv3.LeaseID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != 0 && time.Since(l.granted) < idempotencyLeaseFor {
		return l.id, nil
	}
	resp, err := cli.Grant(ctx, int64((idempotencyTTL + idempotencyLeaseFor).Seconds()))
	if err != nil {
		return 0, err
	}
	l.id, l.granted = resp.ID, time.Now()
	return l.id, nil
}

func (l *idempotencyLeases) forget() {
	l.mu.Lock()
	l.id = 0
	l.mu.Unlock()
}
