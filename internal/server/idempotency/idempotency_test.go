package idempotency_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/state/statetest"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/server/idempotency"
)

// fixture is a store, its keys, and a submitter that records keys with
// tasks, as the server has them.
type fixture struct {
	st   *state.State
	keys *idempotency.Keys
	sub  *tasks.Submitter
}

func newFixture(t *testing.T) *fixture {
	st := statetest.New(t)
	k := idempotency.New(st.Store, st.Cache)
	return &fixture{st: st, keys: k, sub: &tasks.Submitter{State: st, Guard: k}}
}

// serve answers a handler's errors as the server's routes do.
func serve(h idempotency.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			e, status := api.ErrorFrom(err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
		}
	})
}

type answer struct {
	status   int
	replayed bool
	body     string
}

// call sends body to path as user, with key.
func call(h http.Handler, user, path, key, body string) answer {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set(idempotency.Header, key)
	r = r.WithContext(auth.With(r.Context(), auth.Principal{User: user}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return answer{w.Code, w.Header().Get("Idempotent-Replayed") == "true", w.Body.String()}
}

func taskID(t *testing.T, a answer) string {
	t.Helper()
	var task api.Task
	if err := json.Unmarshal([]byte(a.body), &task); err != nil || task.Metadata.ID == "" {
		t.Fatalf("answer %d is no task: %s", a.status, a.body)
	}
	return task.Metadata.ID
}

func taskCount(t *testing.T, f *fixture) int {
	t.Helper()
	ts, _, err := f.st.Store.List(context.Background(), api.KindTask)
	if err != nil {
		t.Fatal(err)
	}
	return len(ts)
}

// creator is a call that records a task for the name in its body, as
// creates do: it refuses a name a task was already recorded for.
type creator struct {
	f    *fixture
	runs atomic.Int32
	// hold, if set, holds the first call at a stage ("start", before it
	// checks the name; "submit", after) until release is closed; entered
	// says it got there.
	hold             string
	entered, release chan struct{}
	mu               sync.Mutex
	made             map[string]bool
	submitted        []string // the tasks Submit returned
}

func newCreator(f *fixture, hold string) *creator {
	return &creator{f: f, hold: hold, entered: make(chan struct{}), release: make(chan struct{}), made: map[string]bool{}}
}

func (c *creator) stage(name string, first bool) {
	if first && c.hold == name {
		close(c.entered)
		<-c.release
	}
}

func (c *creator) handle(w http.ResponseWriter, r *http.Request) error {
	first := c.runs.Add(1) == 1
	var req struct{ Name string }
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return api.Errorf(api.ErrInvalid, "bad body: %v", err)
	}
	c.stage("start", first)
	c.mu.Lock()
	taken := c.made[req.Name]
	c.mu.Unlock()
	if taken {
		return api.Errorf(api.ErrConflict, "a thing named %q already exists", req.Name)
	}
	c.stage("submit", first)
	task := tasks.New(r.Context(), "thing.create", &api.Datacenter{Metadata: api.ObjectMeta{ID: "dc-" + req.Name, Name: req.Name}}, nil)
	task, err := c.f.sub.Submit(r.Context(), c.f.st.Store.Txn(), task)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.made[req.Name] = true
	c.submitted = append(c.submitted, task.Metadata.ID)
	c.mu.Unlock()
	w.Header().Set("Location", "/api/v1/tasks/"+task.Metadata.ID)
	w.Header().Set("Content-Type", "application/json")
	status := http.StatusAccepted // as the server's replyTask answers
	if api.TaskDone(task.State) {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(task)
}

func TestARepeatGetsTheFirstTaskWithoutRunningAgain(t *testing.T) {
	f := newFixture(t)
	c := newCreator(f, "")
	h := serve(f.keys.Wrap(c.handle))
	first := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`)
	if first.status != http.StatusAccepted || first.replayed {
		t.Fatalf("first call: %+v", first)
	}
	again := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`)
	if again.status != first.status || !again.replayed || taskID(t, again) != taskID(t, first) {
		t.Fatalf("repeat: %+v; want %d replayed with task %s", again, first.status, taskID(t, first))
	}
	if n := c.runs.Load(); n != 1 {
		t.Fatalf("the handler ran %d times for a call and its repeat, want 1", n)
	}
	if n := taskCount(t, f); n != 1 {
		t.Fatalf("%d tasks recorded, want 1", n)
	}
}

// A call that records no task: the repeat gets the first answer, byte for
// byte, secret included, which etcd holds sealed.
func TestARepeatGetsTheFirstResponseWhichEtcdKeepsSealed(t *testing.T) {
	f := newFixture(t)
	var runs atomic.Int32
	h := serve(f.keys.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		runs.Add(1)
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		out := map[string]string{"token": hex.EncodeToString(b)}
		return f.keys.CommitResponse(w, r.Context(), f.st.Store.Txn(), http.StatusCreated, out, "mint token")
	}))
	first := call(h, "alice", "/api/v1/tokens", "tok-1", `{}`)
	again := call(h, "alice", "/api/v1/tokens", "tok-1", `{}`)
	if first.status != http.StatusCreated || first.replayed || again.status != http.StatusCreated || !again.replayed || again.body != first.body {
		t.Fatalf("a token call twice with one key: %+v, then %+v", first, again)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the handler ran %d times, want 1", n)
	}
	var out struct{ Token string }
	if err := json.Unmarshal([]byte(first.body), &out); err != nil || out.Token == "" {
		t.Fatalf("answer: %s", first.body)
	}
	resp, err := f.st.Store.Client().Get(context.Background(), idempotency.Prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%d keys recorded under %s, want 1", len(resp.Kvs), idempotency.Prefix)
	}
	if v := string(resp.Kvs[0].Value); strings.Contains(v, out.Token) || strings.Contains(v, "tok-1") {
		t.Fatalf("etcd holds the secret or the key in clear: %s", v)
	}
}

func TestTheKeyWithAnotherRequestIsRefused(t *testing.T) {
	f := newFixture(t)
	c := newCreator(f, "")
	h := serve(f.keys.Wrap(c.handle))
	if a := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`); a.status != http.StatusAccepted {
		t.Fatalf("first call: %+v", a)
	}
	for _, other := range []struct{ path, body string }{
		{"/api/v1/things", `{"name":"b"}`},
		{"/api/v1/others", `{"name":"a"}`},
	} {
		a := call(h, "alice", other.path, "key-1", other.body)
		if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, "already used") ||
			!strings.Contains(a.body, "different request (POST /api/v1/things)") {
			t.Errorf("key-1 for %s %s: %+v; want 422 naming the first request", other.path, other.body, a)
		}
	}
	if n := c.runs.Load(); n != 1 {
		t.Fatalf("the handler ran %d times, want 1: a refused key must do nothing", n)
	}
	for _, bad := range []string{"a key with spaces", strings.Repeat("k", idempotency.MaxKey+1)} {
		if a := call(h, "alice", "/api/v1/things", bad, `{"name":"c"}`); a.status != http.StatusBadRequest {
			t.Errorf("key %.20q...: %+v; want 400", bad, a)
		}
	}
	if n := taskCount(t, f); n != 1 {
		t.Fatalf("%d tasks recorded, want 1", n)
	}
}

// Keys are per user: another user's same key and body is a request of its
// own, never the first one's answer.
func TestAKeyIsNotSharedBetweenUsers(t *testing.T) {
	f := newFixture(t)
	c := newCreator(f, "")
	h := serve(f.keys.Wrap(c.handle))
	alice := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`)
	if alice.status != http.StatusAccepted {
		t.Fatalf("alice: %+v", alice)
	}
	bob := call(h, "bob", "/api/v1/things", "key-1", `{"name":"a"}`)
	if bob.replayed || bob.status != http.StatusConflict || !strings.Contains(bob.body, "already exists") {
		t.Fatalf("bob with alice's key and body: %+v; want his own 409 (the name is taken)", bob)
	}
	bob = call(h, "bob", "/api/v1/things", "key-1", `{"name":"b"}`)
	if bob.replayed || bob.status != http.StatusAccepted || taskID(t, bob) == taskID(t, alice) {
		t.Fatalf("bob with alice's key: %+v; want a task of his own", bob)
	}
	if n := c.runs.Load(); n != 3 {
		t.Fatalf("the handler ran %d times, want 3", n)
	}
}

// Two calls with one key at once, both past the lookup: whichever commits
// first does the work and the other gets its answer, whether the other's
// commit then fails on the key (held at "submit") or its handler fails
// because the work is done, the name taken (held at "start").
func TestConcurrentRepeatsGetTheWinnersAnswer(t *testing.T) {
	for _, hold := range []string{"submit", "start"} {
		t.Run(hold, func(t *testing.T) {
			f := newFixture(t)
			c := newCreator(f, hold)
			h := serve(f.keys.Wrap(c.handle))
			loser := make(chan answer, 1)
			go func() { loser <- call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`) }()
			<-c.entered // the loser is in its handler, nothing recorded
			winner := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`)
			// The winner's task ends before the loser goes on: the loser
			// still gets the first answer (202), not the task's news.
			err := state.Update(context.Background(), f.st, nil, taskID(t, winner), func(tk *api.Task) error {
				tk.State = api.TaskSucceeded
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := f.st.Cache.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			close(c.release)
			l := <-loser
			if winner.status != http.StatusAccepted || winner.replayed {
				t.Fatalf("winner: %+v", winner)
			}
			if l.status != http.StatusAccepted || taskID(t, l) != taskID(t, winner) {
				t.Fatalf("loser: %+v; want the winner's task %s", l, taskID(t, winner))
			}
			switch {
			case !l.replayed:
				t.Errorf("the loser was not answered as a replay: %+v", l)
			case hold == "submit" && (len(c.submitted) != 2 || c.submitted[1] != c.submitted[0]):
				// The guard turns the loser's failed commit into the
				// winner's task, which its handler goes on with.
				t.Errorf("the loser's submit did not return the winner's task: submits returned %v", c.submitted)
			}
			if n := c.runs.Load(); n != 2 {
				t.Fatalf("the handler ran %d times, want 2", n)
			}
			if n := taskCount(t, f); n != 1 {
				t.Fatalf("%d tasks recorded, want 1", n)
			}
		})
	}
}

// A repeat while the first call is still in its handler (nothing recorded
// yet) does not wait for it: it is served on its own and gets its own
// answer, here the 409 of a name being made. A repeat after the first
// finished gets the first's answer.
func TestARepeatWhileTheFirstRunsGetsItsOwnConflict(t *testing.T) {
	f := newFixture(t)
	c := newCreator(f, "")
	var busy sync.Map
	entered, release := make(chan struct{}), make(chan struct{})
	h := serve(f.keys.Wrap(func(w http.ResponseWriter, r *http.Request) error {
		if _, running := busy.LoadOrStore("a", true); running {
			return api.Errorf(api.ErrConflict, "a thing named %q is being made by another task", "a")
		}
		defer busy.Delete("a")
		close(entered)
		<-release
		return c.handle(w, r)
	}))
	first := make(chan answer, 1)
	go func() { first <- call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`) }()
	<-entered
	during := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`)
	if during.status != http.StatusConflict || during.replayed || !strings.Contains(during.body, "being made") {
		t.Fatalf("a repeat while the first runs: %+v; want its own 409", during)
	}
	close(release)
	a := <-first
	if a.status != http.StatusAccepted || a.replayed {
		t.Fatalf("first: %+v", a)
	}
	after := call(h, "alice", "/api/v1/things", "key-1", `{"name":"a"}`)
	if !after.replayed || taskID(t, after) != taskID(t, a) {
		t.Fatalf("a repeat after the first: %+v; want the first's task %s", after, taskID(t, a))
	}
}

func TestRoutesThatRecordNothingRefuseTheHeader(t *testing.T) {
	var ran bool
	next := func(w http.ResponseWriter, r *http.Request) error { ran = true; return nil }
	h := serve(idempotency.Refuse(http.MethodPost, "/api/v1/tasks/{id}/cancel", next))
	a := call(h, "alice", "/api/v1/tasks/t1/cancel", "key-1", "")
	if a.status != http.StatusBadRequest || ran || !strings.Contains(a.body, "does not take an Idempotency-Key header") {
		t.Fatalf("cancel with a key: %+v, handler ran=%v", a, ran)
	}
	for _, c := range []struct {
		method, path string
		task, want   bool
	}{
		{"POST", "/api/v1/vms", true, true},
		{"DELETE", "/api/v1/vms/{name}", true, true},
		{"POST", "/api/v1/tasks/{id}/cancel", true, false},
		{"GET", "/api/v1/tasks/{id}", true, false},
		{"POST", "/api/v1/tokens", false, true},
		{"POST", "/api/v1/vms/{name}/exec", false, false},
	} {
		if got := idempotency.Takes(c.method, c.path, c.task); got != c.want {
			t.Errorf("Takes(%s %s, task=%v) = %v, want %v", c.method, c.path, c.task, got, c.want)
		}
	}
}
