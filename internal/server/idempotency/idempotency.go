// Package idempotency is the API's Idempotency-Key header. A client that
// sends a state-changing call with the header and loses the answer (a
// reset connection, a server restart) sends it again with the same key:
// the server answers as it did the first time instead of doing it twice.
//
// The key is stored, in the same etcd transaction as what the call
// created, for 24 hours, with a hash of the request (method, path, query,
// caller, body) so that the key reused for another request is refused
// (422), and with what to answer: the task's ID and the first answer's
// status for calls that record a task; the whole answer for the few that
// record none (API and join tokens). That answer holds a secret, so it is
// stored sealed with a key derived from the Idempotency-Key, which only
// the client knows: a reader of etcd learns nothing from it.
//
// Keys.Wrap is the HTTP middleware of the routes that take the header
// (Takes says which), Refuse that of the state-changing routes that do
// not. Keys is the tasks.Guard of the server's tasks.Submitter, which
// records a request's key with its task; CommitResponse records it with
// the answer of a call that records no task.
//
// It is part of the HTTP layer and may import internal/store, api and
// internal/control's auth and tasks; never internal/server.
package idempotency

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
	"sync/atomic"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

const (
	// Header is the request header that carries the key.
	Header = "Idempotency-Key"
	// Prefix is where keys are recorded in etcd.
	Prefix = store.SysPrefix + "idempotency/"
	// MaxKey is the longest key taken, in bytes.
	MaxKey = 255
	// Keys live 24 to 25 hours: one lease serves the keys of an hour.
	ttl      = 24 * time.Hour
	leaseFor = time.Hour
	// replayedHeader marks an answer given again.
	replayedHeader = "Idempotent-Replayed"
)

// Handler is an API call's handler, as the server's routes have them: it
// writes its answer or returns the error to answer with.
type Handler = func(w http.ResponseWriter, r *http.Request) error

// Keys records and looks up the keys requests bring.
type Keys struct {
	store  *store.Store
	cache  *store.Cache
	leases leases
}

var _ tasks.Guard = (*Keys)(nil)

// New returns the keys of st; cache is st's, which a replayed task's
// revision is waited for in, so that the caller's next read sees it.
func New(st *store.Store, cache *store.Cache) *Keys {
	return &Keys{store: st, cache: cache}
}

// Takes says which routes take the header: those that record a task
// (answersTask) for a JSON (or no) body, and those that make tokens.
// Cancel records no task of its own; uploads stream their body, which
// cannot be kept to compare.
func Takes(method, path string, answersTask bool) bool {
	switch method + " " + path {
	case "POST /api/v1/join-tokens", "POST /api/v1/tokens":
		return true
	}
	return answersTask && (method == http.MethodPost || method == http.MethodPatch || method == http.MethodDelete) &&
		!strings.HasSuffix(path, "/cancel")
}

// Refuse is for the state-changing routes that do not take the header: a
// client counting on it must not be silently ignored.
func Refuse(method, path string, next Handler) Handler {
	if method == http.MethodGet {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get(Header) != "" {
			return api.Errorf(api.ErrInvalid, "%s %s does not take an %s header (it records nothing a repeat could be answered from)",
				method, path, Header)
		}
		return next(w, r)
	}
}

func checkKey(k string) error {
	if len(k) > MaxKey {
		return api.Errorf(api.ErrInvalid, "%s must be at most %d characters, got %d", Header, MaxKey, len(k))
	}
	for _, c := range []byte(k) {
		if c < 0x21 || c > 0x7e {
			return api.Errorf(api.ErrInvalid, "%s must be printable ASCII without spaces (a UUID, say), got %q", Header, k)
		}
	}
	return nil
}

// claim is a key a request brings, before what it does is recorded.
type claim struct {
	key     string // as sent
	user    string
	etcdKey string
	request string
	route   string
	// used once a commit recorded the key: further writes of the same
	// request (retries of a step) do not claim it again.
	used atomic.Bool
	// settled is the answer of a repeat that committed first, found when
	// this request's own commit failed on the key: the request answers
	// with it, as a replay, whatever the handler then wrote.
	settled atomic.Pointer[replay]
}

type claimKey struct{}

func claimOf(ctx context.Context) *claim {
	c, _ := ctx.Value(claimKey{}).(*claim)
	return c
}

// newClaim reads the request's body, which it puts back, and hashes what
// was asked.
func newClaim(w http.ResponseWriter, r *http.Request, key string) (*claim, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return nil, bodyError(err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	user := auth.User(r.Context())
	h := sha256.New()
	for _, part := range []string{r.Method, r.URL.EscapedPath(), r.URL.Query().Encode(), user} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	h.Write(body)
	return &claim{
		key:     key,
		user:    user,
		etcdKey: Prefix + auth.Hash(user+"\x00"+key),
		request: hex.EncodeToString(h.Sum(nil)),
		route:   r.Method + " " + r.URL.Path,
	}, nil
}

// bodyError is what the server's JSON decoding says of a body it could
// not read.
func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return api.Errorf(api.ErrInvalid, "request body is larger than %d bytes", mbe.Limit)
	}
	return api.Errorf(api.ErrInvalid, "malformed JSON: %v", err)
}

// Wrap answers a repeat of a request as the first one was answered, and
// otherwise hands the request's claim to what records its writes (Claim,
// CommitResponse).
func (k *Keys) Wrap(next Handler) Handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		key := r.Header.Get(Header)
		if key == "" {
			return next(w, r)
		}
		if err := checkKey(key); err != nil {
			return err
		}
		c, err := newClaim(w, r, key)
		if err != nil {
			return err
		}
		ctx := r.Context()
		rep, err := k.repeated(ctx, c)
		if err != nil {
			return err
		}
		if rep != nil {
			rep.write(w)
			return nil
		}
		// The handler's answer is held back: should it fail because the
		// same request, sent again meanwhile, did the work first (its
		// name is now taken), the answer is that request's.
		held := &Held{}
		err = next(held, r.WithContext(context.WithValue(ctx, claimKey{}, c)))
		if rep := c.settled.Load(); rep != nil {
			rep.write(w)
			return nil
		}
		status := held.status
		if status == 0 && err != nil {
			_, status = api.ErrorFrom(err) // as the server will answer
		}
		if status >= 400 && !c.used.Load() {
			if rep, rerr := k.repeated(ctx, c); rerr == nil && rep != nil {
				rep.write(w)
				return nil
			}
		}
		if err != nil && held.status == 0 {
			return err
		}
		held.SendTo(w)
		return err
	}
}

// Held is a ResponseWriter that keeps an answer to send later (or never).
// Idempotent routes answer with small JSON documents and never stream.
type Held struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *Held) Header() http.Header {
	if h.header == nil {
		h.header = http.Header{}
	}
	return h.header
}

func (h *Held) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *Held) Write(b []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(b)
}

// SendTo writes the answer held to w.
func (h *Held) SendTo(w http.ResponseWriter) {
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
	w.Header().Set(replayedHeader, "true")
	if rp.task != nil {
		w.Header().Set("Location", "/api/v1/tasks/"+rp.task.Metadata.ID)
		writeJSON(w, rp.status, rp.task)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rp.status)
	_, _ = w.Write(rp.body)
}

// writeJSON answers as the server's handlers do.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
