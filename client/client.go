package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/pki"
)

// Client calls one vdc server.
type Client struct {
	base  string
	token string
	hc    *http.Client
	// ws is for websockets, which need HTTP/1.1 (hc may speak HTTP/2).
	ws *http.Client
	// RetryFor bounds how long a call that records a task is sent again
	// (same Idempotency-Key) while the server cannot be reached; 30 s when 0.
	RetryFor time.Duration
}

// New makes a client from a config.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("client config has no server URL")
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("client config: bad server URL %q", cfg.Server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	// The same TLS policy as the server's (TLS 1.2+, AEAD suites only).
	tr.TLSClientConfig = pki.Harden(&tls.Config{})
	if cfg.CA != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(cfg.CA)) {
			return nil, errors.New("client config: the CA is not a PEM certificate")
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	wsTr := tr.Clone()
	wsTr.ForceAttemptHTTP2 = false
	wsTr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	wsTr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return &Client{base: strings.TrimRight(cfg.Server, "/"), token: cfg.Token, hc: &http.Client{Transport: tr}, ws: &http.Client{Transport: wsTr}}, nil
}

// FromFile makes a client from a config file (DefaultConfigPath() if "").
func FromFile(path string) (*Client, error) {
	if path == "" {
		path = DefaultConfigPath()
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// URL is the server's base URL.
func (c *Client) URL() string { return c.base }

// Request is one API call.
type Request struct {
	Method string
	Path   string // under /api/v1, e.g. "/vms"
	Query  url.Values
	Body   any
	// IfMatch sends If-Match with this revision.
	IfMatch int64
}

// Do sends a request and decodes the answer into out. A failed call
// returns an *api.Error, on which errors.Is(err, api.ErrNotFound) etc. work.
func (c *Client) Do(ctx context.Context, r Request, out any) error {
	var b []byte
	if r.Body != nil {
		var err error
		if b, err = json.Marshal(r.Body); err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
	}
	u := c.base + "/api/v1" + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	// A call that records a task carries an Idempotency-Key and is sent
	// again, with the same key, when the server could not be reached or
	// the answer was lost: the server then answers with the task the
	// first one recorded rather than doing it twice.
	key := ""
	if _, task := out.(*api.Task); task && r.Method != http.MethodGet && !strings.HasSuffix(r.Path, "/cancel") {
		key = uuid.NewString()
	}
	send := func() (*http.Response, error) {
		var body io.Reader
		if b != nil {
			body = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, r.Method, u, body)
		if err != nil {
			return nil, backoff.Permanent(err)
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.token != "" {
			req.Header.Set("Authorization", "Bearer "+c.token)
		}
		if r.IfMatch > 0 {
			req.Header.Set("If-Match", fmt.Sprintf(`"%d"`, r.IfMatch))
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := c.hc.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err
			}
			err = fmt.Errorf("cannot reach the vdc server at %s: %w", c.base, err)
			if key == "" || ctx.Err() != nil {
				return nil, backoff.Permanent(err)
			}
		}
		return resp, err
	}
	resp, err := backoff.Retry(ctx, send, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(c.retryFor()))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return decodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.Method, u, err)
	}
	return nil
}

// retryFor is how long a call that records a task is sent again while
// the server cannot be reached (a restart takes seconds).
func (c *Client) retryFor() time.Duration {
	if c.RetryFor > 0 {
		return c.RetryFor
	}
	return 30 * time.Second
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
		eb.Error.Status = resp.StatusCode
		return eb.Error
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	return &api.Error{Code: api.CodeOfStatus(resp.StatusCode), Message: msg, Status: resp.StatusCode}
}

// List returns every object of a kind; query filters (e.g. host=h1).
func List[T api.Object](ctx context.Context, c *Client, kind string, query url.Values) ([]T, error) {
	var l api.List[T]
	if err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/" + kind, Query: query}, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Get returns one object by name or ID.
func Get[T api.Object](ctx context.Context, c *Client, kind, name string) (T, error) {
	var out T
	err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/" + kind + "/" + url.PathEscape(name)}, &out)
	return out, err
}

// Create asks for a new object; the answer is the task doing it.
func (c *Client) Create(ctx context.Context, kind string, req any) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/" + kind, Body: req}, &t)
	return &t, err
}

// Update changes an object; with ifMatch > 0 only if it is still at that
// generation (Metadata.Generation of the version read).
func (c *Client) Update(ctx context.Context, kind, name string, req any, ifMatch int64) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodPatch, Path: "/" + kind + "/" + url.PathEscape(name), Body: req, IfMatch: ifMatch}, &t)
	return &t, err
}

// Delete removes an object; query may carry force=true.
func (c *Client) Delete(ctx context.Context, kind, name string, query url.Values) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodDelete, Path: "/" + kind + "/" + url.PathEscape(name), Query: query}, &t)
	return &t, err
}

// Action posts to a sub-resource, e.g. vms/web1/power.
func (c *Client) Action(ctx context.Context, kind, name, action string, req any) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/" + kind + "/" + url.PathEscape(name) + "/" + action, Body: req}, &t)
	return &t, err
}

// Power runs a power action on a VM.
func (c *Client) Power(ctx context.Context, vm string, req api.PowerRequest) (*api.Task, error) {
	return c.Action(ctx, api.KindVM, vm, "power", req)
}

// CreateVM asks for a new VM.
func (c *Client) CreateVM(ctx context.Context, req api.VMCreateRequest) (*api.Task, error) {
	return c.Create(ctx, api.KindVM, req)
}

// GetVM reads a VM by name or ID.
func (c *Client) GetVM(ctx context.Context, name string) (*api.VM, error) {
	return Get[*api.VM](ctx, c, api.KindVM, name)
}

// CreateJoinToken makes a token for new hosts.
func (c *Client) CreateJoinToken(ctx context.Context, req api.JoinTokenRequest) (*api.JoinToken, error) {
	var t api.JoinToken
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/join-tokens", Body: req}, &t)
	return &t, err
}

// ReplaceHost revokes a host's certificate and returns the one-use token
// that joins a machine as that host again.
func (c *Client) ReplaceHost(ctx context.Context, name string, req api.HostReplaceRequest) (*api.HostReplaceResponse, error) {
	var r api.HostReplaceResponse
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/" + api.KindHost + "/" + url.PathEscape(name) + "/replace", Body: req}, &r)
	return &r, err
}

// Version asks the server what it runs.
func (c *Client) Version(ctx context.Context) (*api.Version, error) {
	var v api.Version
	err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/version"}, &v)
	return &v, err
}

// TaskQuery filters ListTasks.
type TaskQuery struct {
	State  string // queued, running, active, succeeded, failed, canceled
	Target string // name or ID of the target object
	Limit  int
}

// ListTasks returns tasks, newest first.
func (c *Client) ListTasks(ctx context.Context, q TaskQuery) ([]*api.Task, error) {
	v := url.Values{}
	if q.State != "" {
		v.Set("state", q.State)
	}
	if q.Target != "" {
		v.Set("target", q.Target)
	}
	if q.Limit > 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	return List[*api.Task](ctx, c, api.KindTask, v)
}

// GetTask reads a task.
func (c *Client) GetTask(ctx context.Context, id string) (*api.Task, error) {
	return Get[*api.Task](ctx, c, api.KindTask, id)
}

// WaitTask waits for a task to finish, calling progress (if not nil) with
// each new version. It returns the final task, and the task's error if it
// failed.
func (c *Client) WaitTask(ctx context.Context, id string, progress func(*api.Task)) (*api.Task, error) {
	var after int64
	for {
		var t api.Task
		q := url.Values{"wait": {"30s"}}
		if progress == nil {
			q.Set("done", "true")
		} else {
			// Always say what was seen: without it the server waits for
			// the next change, and a follower that came late would not see
			// the task as it is now (a stop waiting for its guest, say).
			q.Set("after", fmt.Sprint(after))
		}
		if err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/tasks/" + url.PathEscape(id), Query: q}, &t); err != nil {
			return nil, err
		}
		if t.Metadata.Revision > after && progress != nil {
			progress(&t)
		}
		after = t.Metadata.Revision
		if api.TaskDone(t.State) {
			if t.State != api.TaskSucceeded {
				if t.Error != nil {
					return &t, t.Error
				}
				return &t, fmt.Errorf("task %s %s", t.Metadata.ID, t.State)
			}
			return &t, nil
		}
		if ctx.Err() != nil {
			return &t, ctx.Err()
		}
	}
}

// Wait waits for a task a call just returned (see WaitTask); one the
// request already finished needs no round trip.
func (c *Client) Wait(ctx context.Context, t *api.Task) (*api.Task, error) {
	if api.TaskDone(t.State) {
		if t.State != api.TaskSucceeded && t.Error != nil {
			return t, t.Error
		}
		return t, nil
	}
	return c.WaitTask(ctx, t.Metadata.ID, nil)
}
