package server

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/store"
)

// Idempotency keys. A client that sends a state-changing call with an
// Idempotency-Key header and loses the answer (a reset connection, a
// server restart) sends it again with the same key: the server answers
// as it did the first time instead of doing it twice. The key is stored,
// in the same etcd transaction as what the call created, for
// idempotencyTTL, with a hash of the request (method, path, query,
// caller, body) so that the key reused for another request is refused
// (422), and with what to answer: the task's ID and the first answer's
// status for calls that record a task; the whole answer for the few that
// record none (API and join tokens). That answer holds a secret, so it is
// stored sealed with a key derived from the Idempotency-Key, which only
// the client knows: a reader of etcd learns nothing from it.
const (
	IdempotencyHeader = "Idempotency-Key"
	idempotencyPrefix = store.SysPrefix + "idempotency/"
	// Keys live 24 to 25 hours: one lease serves the keys of an hour.
	idempotencyTTL      = 24 * time.Hour
	idempotencyLeaseFor = time.Hour
	maxIdempotencyKey   = 255
)

type idempotencyRecord struct {
	Task string `json:"task,omitempty"`
	// Status is the first answer's status; Sealed its body when it was no
	// task (nonce and AES-GCM ciphertext).
	Status  int       `json:"status"`
	Sealed  []byte    `json:"sealed,omitempty"`
	Request string    `json:"request"` // hash of what was asked
	Route   string    `json:"route"`   // "POST /api/v1/vms", for messages
	Created time.Time `json:"created"`
}

// idempotencyClaim is a key a request brings, before what it does is
// recorded.
type idempotencyClaim struct {
	key     string // as sent
	user    string
	etcdKey string
	request string
	route   string
	// used once a commit recorded the key: further writes of the same
	// request (retries of a step) do not claim it again.
	used atomic.Bool
}

type claimKey struct{}

func claimOf(ctx context.Context) *idempotencyClaim {
	c, _ := ctx.Value(claimKey{}).(*idempotencyClaim)
	return c
}

// takesIdempotencyKey says which routes take the header: those that
// record a task for a JSON (or no) body, and those that make tokens.
// Cancel records no task of its own; uploads stream their body, which
// cannot be kept to compare.
func takesIdempotencyKey(r route) bool {
	switch r.method + " " + r.path {
	case "POST /api/v1/join-tokens", "POST /api/v1/tokens":
		return true
	}
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
			fail(w, api.Errorf(api.ErrInvalid, "%s %s does not take an %s header (it records nothing a repeat could be answered from)",
				rt.method, rt.path, IdempotencyHeader))
			return
		}
		next(w, r)
	}
}

// idempotent answers a repeat of a request as the first one was answered,
// and otherwise hands the request's claim to what records its writes
// (submit, claimResponse).
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
		user := auth.User(r.Context())
		h := sha256.New()
		for _, part := range []string{r.Method, r.URL.EscapedPath(), r.URL.Query().Encode(), user} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		h.Write(body)
		c := &idempotencyClaim{
			key:     key,
			user:    user,
			etcdKey: idempotencyPrefix + auth.Hash(user+"\x00"+key),
			request: hex.EncodeToString(h.Sum(nil)),
			route:   r.Method + " " + r.URL.Path,
		}
		ctx := r.Context()
		rep, err := s.repeated(ctx, c)
		if err != nil {
			fail(w, err)
			return
		}
		if rep != nil {
			rep.write(w)
			return
		}
		// The handler's answer is held back: should it fail because the
		// same request, sent again meanwhile, did the work first (its
		// name is now taken), the answer is that request's.
		rec := &heldResponse{header: http.Header{}}
		next(rec, r.WithContext(context.WithValue(ctx, claimKey{}, c)))
		if rec.status >= 400 && !c.used.Load() {
			if rep, err := s.repeated(ctx, c); err == nil && rep != nil {
				rep.write(w)
				return
			}
		}
		rec.flush(w)
	}
}

// heldResponse keeps an answer to send later. Idempotent routes answer
// with small JSON documents and never stream.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

func (h *heldResponse) flush(w http.ResponseWriter) {
	for k, v := range h.header {
		w.Header()[k] = v
	}
	if h.status == 0 {
		h.status = http.StatusOK
	}
	w.WriteHeader(h.status)
	_, _ = w.Write(h.body.Bytes())
}

// replay is the answer to a repeated request.
type replay struct {
	status int
	task   *api.Task // the task as it is now
	body   []byte    // or the first answer's body
}

func (rp *replay) write(w http.ResponseWriter) {
	w.Header().Set("Idempotent-Replayed", "true")
	if rp.task != nil {
		w.Header().Set("Location", "/api/v1/tasks/"+rp.task.Metadata.ID)
		reply(w, rp.status, rp.task)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rp.status)
	_, _ = w.Write(rp.body)
}

// repeated returns the answer to an earlier request with the claim's key,
// nil if there was none, and an error if the key served another request.
func (s *Server) repeated(ctx context.Context, c *idempotencyClaim) (*replay, error) {
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
		return nil, api.Errorf(api.ErrUnprocessable, "%s %q was already used at %s for a different request (%s); use a new key for a new request",
			IdempotencyHeader, c.key, rec.Created.Format(time.RFC3339), rec.Route)
	}
	if rec.Task == "" {
		body, err := c.open(rec.Sealed)
		if err != nil {
			return nil, api.Errorf(api.ErrConflict, "%s %q: cannot read the answer it recorded: %v", IdempotencyHeader, c.key, err)
		}
		return &replay{status: rec.Status, body: body}, nil
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
	return &replay{status: rec.Status, task: o.(*api.Task)}, nil
}

// claimIdempotencyKey adds the request's key, if it brought one, to the
// transaction that records its task t.
func (s *Server) claimIdempotencyKey(ctx context.Context, txn *store.Txn, t *api.Task) error {
	status := http.StatusAccepted // as replyTask answers
	if api.TaskDone(t.State) {
		status = http.StatusOK
	}
	return s.claim(ctx, txn, idempotencyRecord{Task: t.Metadata.ID, Status: status})
}

// claimResponse adds the request's key, if it brought one, to the
// transaction of a call that records no task, with the answer it will
// give.
func (s *Server) claimResponse(ctx context.Context, txn *store.Txn, status int, v any) error {
	c := claimOf(ctx)
	if c == nil || c.used.Load() {
		return nil
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v) // as reply writes it
	sealed, err := c.seal(buf.Bytes())
	if err != nil {
		return err
	}
	return s.claim(ctx, txn, idempotencyRecord{Status: status, Sealed: sealed})
}

func (s *Server) claim(ctx context.Context, txn *store.Txn, rec idempotencyRecord) error {
	c := claimOf(ctx)
	if c == nil || c.used.Load() {
		return nil
	}
	lease, err := s.idem.lease(ctx, s.cli)
	if err != nil {
		return api.Errorf(api.ErrUnavailable, "record %s: %v", IdempotencyHeader, err)
	}
	rec.Request, rec.Route, rec.Created = c.request, c.route, time.Now().UTC()
	b, _ := json.Marshal(rec)
	txn.If(clientv3.Compare(clientv3.CreateRevision(c.etcdKey), "=", 0),
		api.Errorf(api.ErrConflict, "%s %q is being used by another request at the same time", IdempotencyHeader, c.key)).
		PutRaw(c.etcdKey, string(b), clientv3.WithLease(lease))
	return nil
}

// committed notes that the transaction with the request's key went in.
func committed(ctx context.Context) {
	if c := claimOf(ctx); c != nil {
		c.used.Store(true)
	}
}

// settle decides what a failed commit of a request with a key means: a
// repeat of it that won the race has recorded the answer to give;
// otherwise the request failed with err.
func (s *Server) settle(ctx context.Context, err error) (*replay, error) {
	c := claimOf(ctx)
	if c == nil || c.used.Load() {
		return nil, err
	}
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.idem.forget()
		return nil, api.Errorf(api.ErrUnavailable, "record %s: its lease expired; retry: %v", IdempotencyHeader, err)
	}
	rep, rerr := s.repeated(ctx, c)
	switch {
	case rerr != nil:
		return nil, rerr
	case rep != nil:
		return rep, nil
	}
	return nil, err
}

// settleClaim is settle for submit, which answers with a task.
func (s *Server) settleClaim(ctx context.Context, err error) (*api.Task, error) {
	rep, err := s.settle(ctx, err)
	if err != nil {
		return nil, err
	}
	if rep.task == nil {
		return nil, api.Errorf(api.ErrUnprocessable, "%s was used for a request that records no task", IdempotencyHeader)
	}
	return rep.task, nil
}

// commitResponse commits the transaction of a call that records no task
// and answers it: with v, or, when a repeat of the request won the race,
// with that one's answer.
func (s *Server) commitResponse(w http.ResponseWriter, ctx context.Context, txn *store.Txn, status int, v any, what string) {
	if err := s.claimResponse(ctx, txn, status, v); err != nil {
		fail(w, err)
		return
	}
	if _, err := txn.Commit(ctx); err != nil {
		rep, err := s.settle(ctx, err)
		if err != nil {
			fail(w, fmt.Errorf("%s: %w", what, err))
			return
		}
		rep.write(w)
		return
	}
	committed(ctx)
	reply(w, status, v)
}

// The sealing key is derived from the Idempotency-Key and the caller, as
// the record's etcd key is, but otherwise: one does not give the other.
func (c *idempotencyClaim) aead() (cipher.AEAD, error) {
	k := sha256.Sum256([]byte("vdc idempotent answer\x00" + c.user + "\x00" + c.key))
	b, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (c *idempotencyClaim) seal(plain []byte) ([]byte, error) {
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

func (c *idempotencyClaim) open(sealed []byte) ([]byte, error) {
	g, err := c.aead()
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize() {
		return nil, errors.New("too short")
	}
	return g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], []byte(c.etcdKey))
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

// idempotencyGuard joins a request's Idempotency-Key to the transaction
// that queues its task (tasks.Guard).
type idempotencyGuard struct{ s *Server }

func (g idempotencyGuard) Claim(ctx context.Context, txn *store.Txn, t *api.Task) error {
	return g.s.claimIdempotencyKey(ctx, txn, t)
}

func (g idempotencyGuard) Settle(ctx context.Context, err error) (*api.Task, error) {
	return g.s.settleClaim(ctx, err)
}

func (idempotencyGuard) Committed(ctx context.Context) { committed(ctx) }
