package agent

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
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netguard"
	"github.com/vdc-project/vdc/internal/pki"
)

// Client is how a management server calls host agents.
type Client struct {
	cert tls.Certificate
	pool *x509.CertPool

	mu         sync.Mutex
	transports map[string]*http.Transport // by host ID

	// Lookup, when set, gives a host's current address by its ID, and
	// whether the server shows it connected: an agent that restarted
	// listens on a new port, and a long task still holds the old one.
	Lookup func(hostID string) (address string, connected bool)
	// RestartWait is how long a call to a host shown connected goes on
	// trying when the host refuses connections (its agent restarting, as
	// `vdc up` does within seconds, maybe on a new port) before it fails
	// saying the host did not come back: the server's host timeout, after
	// which the host is shown disconnected anyway. Zero: no retry.
	RestartWait time.Duration
	// CheckPeer, when set, vets a host's serving certificate once the CA
	// has verified it: that it is the host's current one, not one revoked
	// or renewed away.
	CheckPeer func(hostID string, cert *x509.Certificate) error
}

// NewClient uses the server's certificate (CN vdc-server) to call agents.
func NewClient(cert tls.Certificate, pool *x509.CertPool) *Client {
	return &Client{cert: cert, pool: pool, transports: map[string]*http.Transport{}}
}

// Target is a host to call.
type Target struct {
	ID, Name, Address string
}

func (c *Client) transport(hostID string) *http.Transport {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.transports[hostID]
	if !ok {
		t = &http.Transport{
			TLSClientConfig: pki.Harden(&tls.Config{
				RootCAs:      c.pool,
				Certificates: []tls.Certificate{c.cert},
				// The host is known by its ID, whatever address it has today.
				ServerName: pki.HostDNSName(hostID),
				VerifyConnection: func(cs tls.ConnectionState) error {
					if c.CheckPeer == nil || len(cs.PeerCertificates) == 0 {
						return nil
					}
					if err := c.CheckPeer(hostID, cs.PeerCertificates[0]); err != nil {
						return fmt.Errorf("host %s: %w", hostID, err)
					}
					return nil
				},
			}),
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     netguard.ClientIdleTimeout,
		}
		c.transports[hostID] = t
	}
	return t
}

// Forget closes the idle connections to a host, made with certificates
// that may no longer be good.
func (c *Client) Forget(hostID string) {
	c.mu.Lock()
	t := c.transports[hostID]
	c.mu.Unlock()
	if t != nil {
		t.CloseIdleConnections()
	}
	if b, ok := bulkTransports.Load(fmt.Sprintf("%p/%s", c, hostID)); ok {
		b.(*http.Transport).CloseIdleConnections()
	}
}

// address is where to call a host now, and whether it is shown connected.
func (c *Client) address(h Target) (string, bool) {
	if c.Lookup != nil {
		a, connected := c.Lookup(h.ID)
		if a != "" {
			return a, connected
		}
		return h.Address, connected
	}
	return h.Address, true
}

// send makes a request of a host's agent over transport and returns the
// response for the caller to read; an answer other than 2xx becomes the
// host's error. size is the body's length (-1 when unknown).
//
// A host shown connected whose agent refuses the connection is restarting:
// the request, which it never saw, is sent again (at the address its next
// heartbeat gives) until it answers, it is shown disconnected or
// RestartWait has passed. Only a body that can be read again is resent.
func (c *Client) send(ctx context.Context, h Target, tr *http.Transport, method, path string, body io.Reader, size int64) (*http.Response, error) {
	var giveUp time.Time
	backoff := 50 * time.Millisecond
	for {
		addr, connected := c.address(h)
		resp, err := c.sendOnce(ctx, h, addr, tr, method, path, body, size)
		if err == nil || !NeverReached(err) || c.RestartWait <= 0 || !rewind(body) {
			return resp, err
		}
		now := time.Now()
		first := giveUp.IsZero()
		if first {
			giveUp = now.Add(c.RestartWait)
		}
		switch {
		case !connected && first:
			return nil, err // known to be down: nothing to wait for
		case !connected:
			return nil, fmt.Errorf("host %s did not come back: it is now disconnected: %w", h.Name, err)
		case !now.Before(giveUp):
			return nil, fmt.Errorf("host %s did not come back within %s (shown connected, but its agent refuses connections): %w",
				h.Name, c.RestartWait, err)
		}
		notify(ctx, fmt.Sprintf("host %s does not answer (its agent restarting?); waiting up to %s for it to come back",
			h.Name, giveUp.Sub(now).Round(100*time.Millisecond)))
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("host %s: %w (waiting for it to come back: %v)", h.Name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// rewind readies a request body to be sent again, if it can be.
func rewind(body io.Reader) bool {
	if body == nil {
		return true
	}
	s, ok := body.(io.Seeker)
	if !ok {
		return false
	}
	_, err := s.Seek(0, io.SeekStart)
	return err == nil
}

type noticeKey struct{}

// WithNotice has the calls to agents made with ctx say through fn what
// they wait for (a task shows it as its message).
func WithNotice(ctx context.Context, fn func(msg string)) context.Context {
	return context.WithValue(ctx, noticeKey{}, fn)
}

func notify(ctx context.Context, msg string) {
	if fn, ok := ctx.Value(noticeKey{}).(func(string)); ok {
		fn(msg)
	}
}

func (c *Client) sendOnce(ctx context.Context, h Target, addr string, tr *http.Transport, method, path string, body io.Reader, size int64) (*http.Response, error) {
	if addr == "" {
		return nil, api.Errorf(api.ErrUnavailable, "host %s has not reported an address yet", h.Name)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	if size >= 0 {
		req.ContentLength = size
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("host %s unreachable: %w", h.Name, agenthttp.WithClass(err, api.ErrUnavailable))
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		rb, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var eb api.ErrorBody
		if json.Unmarshal(rb, &eb) == nil && eb.Error != nil {
			eb.Error.Status = resp.StatusCode
			return nil, fmt.Errorf("host %s: %w", h.Name, eb.Error)
		}
		return nil, fmt.Errorf("host %s: %s %s: HTTP %d", h.Name, method, path, resp.StatusCode)
	}
	return resp, nil
}

// roundTrip sends a request to a host's agent and returns the answer's
// body, or the host's error as an API error.
func (c *Client) roundTrip(ctx context.Context, h Target, method, path string, body io.Reader, size int64) ([]byte, error) {
	resp, err := c.send(ctx, h, c.transport(h.ID), method, path, body, size)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}

// NeverReached says whether a request failed before the host could see
// it: no connection was made.
func NeverReached(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// do is roundTrip with JSON in and out.
func (c *Client) do(ctx context.Context, h Target, method, path string, in, out any) error {
	var body io.Reader
	size := int64(0)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, size = bytes.NewReader(b), int64(len(b))
	}
	rb, err := c.roundTrip(ctx, h, method, path, body, size)
	if err != nil || out == nil || len(rb) == 0 {
		return err
	}
	return json.Unmarshal(rb, out)
}

// Define creates or updates a VM on the host.
func (c *Client) Define(ctx context.Context, h Target, cfg hypervisor.VMConfig) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPut, "/agent/v1/vms/"+cfg.ID, cfg, &st)
	return st, err
}

// Undefine deletes a VM from the host; force powers it off first.
func (c *Client) Undefine(ctx context.Context, h Target, id string, force bool) error {
	return c.do(ctx, h, http.MethodDelete, fmt.Sprintf("/agent/v1/vms/%s?force=%t", id, force), nil, nil)
}

// Power runs a power action on the host.
func (c *Client) Power(ctx context.Context, h Target, id string, req api.PowerRequest) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+id+"/power", req, &st)
	return st, err
}

// List returns the states of the host's VMs.
func (c *Client) List(ctx context.Context, h Target) ([]api.AgentVMState, error) {
	var out []api.AgentVMState
	err := c.do(ctx, h, http.MethodGet, "/agent/v1/vms", nil, &out)
	return out, err
}

// PutFile streams a file into a datastore the host reaches; with inspect,
// the host checks it is a disk image and reports its format and size.
func (c *Client) PutFile(ctx context.Context, h Target, datastoreID, path string, body io.Reader, size int64, inspect bool) (FileResult, error) {
	var res FileResult
	rb, err := c.roundTrip(ctx, h, http.MethodPut, fmt.Sprintf("/agent/v1/datastores/%s/files?path=%s&inspect=%t", datastoreID, url.QueryEscape(path), inspect), body, size)
	if err != nil {
		return res, err
	}
	return res, json.Unmarshal(rb, &res)
}

// DeleteFile removes a file or folder of a datastore.
func (c *Client) DeleteFile(ctx context.Context, h Target, datastoreID, path string) error {
	return c.do(ctx, h, http.MethodDelete, fmt.Sprintf("/agent/v1/datastores/%s/files?path=%s", datastoreID, url.QueryEscape(path)), nil, nil)
}

// Exec runs a program in a VM's guest.
func (c *Client) Exec(ctx context.Context, h Target, vmID string, req ExecRequest) (hypervisor.ExecResult, error) {
	var res hypervisor.ExecResult
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/exec", req, &res)
	return res, err
}

// ConsoleLog returns the end of a VM's console output.
func (c *Client) ConsoleLog(ctx context.Context, h Target, vmID string, bytes int) ([]byte, error) {
	return c.roundTrip(ctx, h, http.MethodGet, fmt.Sprintf("/agent/v1/vms/%s/console/log?bytes=%d", vmID, bytes), nil, -1)
}

// Console opens a VM's serial console on its host as a websocket.
func (c *Client) Console(ctx context.Context, h Target, vmID string) (*websocket.Conn, error) {
	return c.stream(ctx, h, vmID, "console")
}

// VNC opens a VM's VNC display on its host as a websocket (RFB inside).
func (c *Client) VNC(ctx context.Context, h Target, vmID string) (*websocket.Conn, error) {
	return c.stream(ctx, h, vmID, "vnc")
}

// HotAdd grows a running VM on its host.
func (c *Client) HotAdd(ctx context.Context, h Target, vmID string, req HotAddRequest) (hypervisor.HotAddResult, error) {
	var res hypervisor.HotAddResult
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/hot-add", req, &res)
	return res, err
}

// stream opens a websocket to one of a VM's streams on its host, at its
// current address.
func (c *Client) stream(ctx context.Context, h Target, vmID, what string) (*websocket.Conn, error) {
	addr, _ := c.address(h)
	ws, resp, err := websocket.Dial(ctx, fmt.Sprintf("wss://%s/agent/v1/vms/%s/%s", addr, vmID, what),
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: c.transport(h.ID)}})
	if err != nil {
		if resp != nil && resp.Body != nil {
			var eb api.ErrorBody
			if b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20)); json.Unmarshal(b, &eb) == nil && eb.Error != nil {
				eb.Error.Status = resp.StatusCode
				return nil, fmt.Errorf("host %s: %w", h.Name, eb.Error)
			}
		}
		return nil, fmt.Errorf("%s of vm %s on host %s: %w", what, vmID, h.Name, err)
	}
	return ws, nil
}

// VM reads what a host knows of one VM, migrations included.
func (c *Client) VM(ctx context.Context, h Target, vmID string) (VMInfo, error) {
	var info VMInfo
	err := c.do(ctx, h, http.MethodGet, "/agent/v1/vms/"+vmID, nil, &info)
	return info, err
}

// Incoming has a host start receiving a VM.
func (c *Client) Incoming(ctx context.Context, h Target, req IncomingRequest) (hypervisor.Incoming, error) {
	var in hypervisor.Incoming
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+req.Config.ID+"/incoming", req, &in)
	return in, err
}

// FinishIncoming runs a received VM.
func (c *Client) FinishIncoming(ctx context.Context, h Target, vmID string) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/incoming/finish", nil, &st)
	return st, err
}

// AbortIncoming throws away a copy being received.
func (c *Client) AbortIncoming(ctx context.Context, h Target, vmID string) error {
	return c.do(ctx, h, http.MethodDelete, "/agent/v1/vms/"+vmID+"/incoming", nil, nil)
}

// MigrateOut starts sending a VM.
func (c *Client) MigrateOut(ctx context.Context, h Target, vmID string, to hypervisor.MigrateTarget) error {
	return c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/migrate", to, nil)
}

// CancelMigration stops a migration out.
func (c *Client) CancelMigration(ctx context.Context, h Target, vmID string) error {
	return c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/migration/cancel", nil, nil)
}

// Release has a host forget a VM that runs elsewhere now.
func (c *Client) Release(ctx context.Context, h Target, vmID string, removeDisks bool) error {
	return c.do(ctx, h, http.MethodPost, fmt.Sprintf("/agent/v1/vms/%s/release?removeDisks=%t", vmID, removeDisks), nil, nil)
}

// MoveDisks starts moving a running VM's disks to new files on its host.
func (c *Client) MoveDisks(ctx context.Context, h Target, vmID string, moves []hypervisor.DiskMove) error {
	return c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/move-disks", moves, nil)
}

// Snapshot has a host switch a VM's disks to new overlays.
func (c *Client) Snapshot(ctx context.Context, h Target, vmID string, req hypervisor.SnapshotRequest) (hypervisor.SnapshotResult, error) {
	var res hypervisor.SnapshotResult
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/snapshot", req, &res)
	return res, err
}

// Revert puts a VM back to a snapshot.
func (c *Client) Revert(ctx context.Context, h Target, vmID string, req hypervisor.RevertRequest) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/revert", req, &st)
	return st, err
}

// MergeDisk merges one disk file into its base.
func (c *Client) MergeDisk(ctx context.Context, h Target, vmID string, m hypervisor.DiskMerge) error {
	return c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/merge", m, nil)
}

// AddDisk adds a disk to a VM, hot-plugged when it runs.
func (c *Client) AddDisk(ctx context.Context, h Target, vmID string, d hypervisor.DiskConfig) (api.AgentVMState, error) {
	var st api.AgentVMState
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/vms/"+vmID+"/disks", d, &st)
	return st, err
}

// ResizeDisk grows a VM's disk.
func (c *Client) ResizeDisk(ctx context.Context, h Target, vmID, disk string, size int64) error {
	return c.do(ctx, h, http.MethodPut, "/agent/v1/vms/"+vmID+"/disks/"+disk+"/size", DiskResize{Size: size}, nil)
}

// RemoveDisk unplugs a VM's disk.
func (c *Client) RemoveDisk(ctx context.Context, h Target, vmID, disk string) error {
	return c.do(ctx, h, http.MethodDelete, "/agent/v1/vms/"+vmID+"/disks/"+disk, nil, nil)
}

// RemoveFiles deletes disk files nothing uses.
func (c *Client) RemoveFiles(ctx context.Context, h Target, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	return c.do(ctx, h, http.MethodPost, "/agent/v1/files/remove", RemoveFilesRequest{Paths: paths}, nil)
}

// CopyDisk starts a disk copy on a host.
func (c *Client) CopyDisk(ctx context.Context, h Target, cp hypervisor.DiskCopy) (Job, error) {
	var j Job
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/disk-copies", cp, &j)
	return j, err
}

// Import starts fetching an image into a datastore on a host.
func (c *Client) Import(ctx context.Context, h Target, datastoreID string, req ImportRequest) (Job, error) {
	var j Job
	err := c.do(ctx, h, http.MethodPost, "/agent/v1/datastores/"+datastoreID+"/import", req, &j)
	return j, err
}

// Job reads a host's job.
func (c *Client) Job(ctx context.Context, h Target, id string) (Job, error) {
	var j Job
	err := c.do(ctx, h, http.MethodGet, "/agent/v1/jobs/"+id, nil, &j)
	return j, err
}
