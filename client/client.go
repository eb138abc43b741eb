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
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/uuid"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
)

// Client calls one vdc server.
type Client struct {
	base  string
	token string
	hc    *http.Client
	// ws is for websockets, which need HTTP/1.1 (hc may speak HTTP/2).
	ws *http.Client
	// RetryFor bounds how long a call that is safe to send again is tried
	// (see Do): DefaultRetryFor when 0, never again when negative.
	RetryFor time.Duration
}

// DefaultRetryFor is how long a call that can safely be sent again is
// retried while the server cannot be reached or is unavailable.
const DefaultRetryFor = 30 * time.Second

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
	// Less than the server's idle timeout, so that a request does not go
	// out on a connection the server is closing.
	tr.IdleConnTimeout = netguard.ClientIdleTimeout
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

// WithRetry returns a client like c that retries calls for at most d (0:
// never).
func (c *Client) WithRetry(d time.Duration) *Client {
	c2 := *c
	c2.RetryFor = d
	if d <= 0 {
		c2.RetryFor = -1
	}
	return &c2
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
	// Idempotent marks a call that changes something and takes an
	// Idempotency-Key header: the server does it once however many times
	// it is sent with one key. Do sends IdempotencyKey, or a new random
	// key when it is empty, with every attempt.
	Idempotent     bool
	IdempotencyKey string
}

// IdempotencyHeader is the header that makes a call safe to send again.
const IdempotencyHeader = "Idempotency-Key"

// Do sends a request and decodes the answer into out. A failed call
// returns an *api.Error, on which errors.Is(err, api.ErrNotFound) etc. work.
//
// A call that is safe to send again (a read, or an Idempotent call with
// its key) is sent again, with exponential backoff for up to 30s, when the
// server cannot be reached, the connection breaks before the whole answer
// came, or a proxy (or a server going away) answers 502, 503 or 504. Any
// other call is sent again only when it never left (the connection could
// not be made).
func (c *Client) Do(ctx context.Context, r Request, out any) error {
	var body []byte
	if r.Body != nil {
		b, err := json.Marshal(r.Body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = b
	}
	u := c.base + "/api/v1" + r.Path
	if len(r.Query) > 0 {
		u += "?" + r.Query.Encode()
	}
	key := idempotencyKey(r, out)
	safe := r.Method == http.MethodGet || r.Method == http.MethodHead || key != ""
	attempt := func() ([]byte, error) { return c.send(ctx, r, u, body, key, safe) }
	b, err := c.retry(ctx, attempt)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", r.Method, u, err)
	}
	return nil
}

// idempotencyKey is the Idempotency-Key a call is sent with: the
// request's, a new one for an idempotent call without one, or none.
func idempotencyKey(r Request, out any) string {
	// A call answered with a task records one, and the server takes a
	// key for every such call but a cancel (which records none).
	_, task := out.(*api.Task)
	idempotent := r.Idempotent || task && r.Method != http.MethodGet && !strings.HasSuffix(r.Path, "/cancel")
	key := r.IdempotencyKey
	if idempotent && key == "" {
		key = uuid.NewString()
	}
	return key
}

// send makes one attempt at a call to u, and returns the answer's body.
// Its error is a backoff.Permanent one unless the call may be sent again
// (safe, or it never left).
func (c *Client) send(ctx context.Context, r Request, u string, body []byte, key string, safe bool) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, r.Method, u, rd)
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
		req.Header.Set(IdempotencyHeader, key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("cannot reach the vdc server at %s: %w", c.base, err)
		if ctx.Err() != nil || !(safe || neverSent(err)) {
			return nil, backoff.Permanent(err)
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		aerr, fromVDC := readError(resp)
		if safe && isTransient(resp, fromVDC) {
			return nil, aerr
		}
		return nil, backoff.Permanent(aerr)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		err = fmt.Errorf("%s %s: read answer: %w", r.Method, u, err)
		if ctx.Err() != nil || !safe {
			return nil, backoff.Permanent(err)
		}
		return nil, err
	}
	return b, nil
}

// retry runs op with exponential backoff for up to c.RetryFor.
func (c *Client) retry(ctx context.Context, op backoff.Operation[[]byte]) ([]byte, error) {
	retryFor := c.RetryFor
	if retryFor == 0 {
		retryFor = DefaultRetryFor
	}
	if retryFor < 0 {
		b, err := op()
		var perm *backoff.PermanentError
		if errors.As(err, &perm) {
			err = perm.Unwrap()
		}
		return b, err
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.Multiplier, bo.MaxInterval = 100*time.Millisecond, 2, 5*time.Second
	return backoff.Retry(ctx, op, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(retryFor))
}

// neverSent says whether a transport error happened before the request
// could reach the server (no connection), so that any request may be sent
// again.
func neverSent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// isTransient says whether an error answer means that nothing was done
// and the same request may succeed soon: a 502, 503 or 504 that does not
// come from vdc itself (a proxy, a load balancer) or that says when to
// try again.
func isTransient(resp *http.Response, fromVDC bool) bool {
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return !fromVDC || resp.Header.Get("Retry-After") != ""
	}
	return false
}

func jsonDecode(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }

func decodeError(resp *http.Response) error {
	err, _ := readError(resp)
	return err
}

// readError reads an error answer; fromVDC says it was a vdc error
// document rather than some proxy's page.
func readError(resp *http.Response) (err error, fromVDC bool) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var eb api.ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error != nil {
		eb.Error.Status = resp.StatusCode
		return eb.Error, true
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = resp.Status
	}
	return &api.Error{Code: api.CodeOfStatus(resp.StatusCode), Message: msg, Status: resp.StatusCode}, false
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
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/" + kind, Body: req, Idempotent: true}, &t)
	return &t, err
}

// Update changes an object; with ifMatch > 0 only if it is still at that
// generation (Metadata.Generation of the version read).
func (c *Client) Update(ctx context.Context, kind, name string, req any, ifMatch int64) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodPatch, Path: "/" + kind + "/" + url.PathEscape(name), Body: req, IfMatch: ifMatch, Idempotent: true}, &t)
	return &t, err
}

// Delete removes an object; query may carry force=true.
func (c *Client) Delete(ctx context.Context, kind, name string, query url.Values) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodDelete, Path: "/" + kind + "/" + url.PathEscape(name), Query: query, Idempotent: true}, &t)
	return &t, err
}

// Action posts to a sub-resource, e.g. vms/web1/power.
func (c *Client) Action(ctx context.Context, kind, name, action string, req any) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/" + kind + "/" + url.PathEscape(name) + "/" + action, Body: req, Idempotent: true}, &t)
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
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/join-tokens", Body: req, Idempotent: true}, &t)
	return &t, err
}

// CreateToken makes an API token; the answer holds its secret (Token).
func (c *Client) CreateToken(ctx context.Context, req api.TokenCreateRequest) (*api.Token, error) {
	var t api.Token
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/tokens", Body: req, Idempotent: true}, &t)
	return &t, err
}

// ListTokens lists the API tokens, without their secrets.
func (c *Client) ListTokens(ctx context.Context) ([]api.Token, error) {
	var l api.List[api.Token]
	err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/tokens"}, &l)
	return l.Items, err
}

// DeleteToken deletes an API token by ID: it stops working at once.
func (c *Client) DeleteToken(ctx context.Context, id string) (*api.Token, error) {
	var t api.Token
	err := c.Do(ctx, Request{Method: http.MethodDelete, Path: "/tokens/" + url.PathEscape(id)}, &t)
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
