package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/vdc-project/vdc/api"
)

// CreateUpload makes a staging folder for an import's files.
func (c *Client) CreateUpload(ctx context.Context, req api.UploadRequest) (*api.Upload, error) {
	var u api.Upload
	return &u, c.Do(ctx, Request{Method: http.MethodPost, Path: "/uploads", Body: req}, &u)
}

// UploadFile sends one file of a package (or a whole OVA, or a disk).
func (c *Client) UploadFile(ctx context.Context, upload, name string, body io.Reader, size int64) (*api.UploadedFile, error) {
	resp, err := c.raw(ctx, http.MethodPut, "/api/v1/uploads/"+url.PathEscape(upload)+"/files?name="+url.QueryEscape(name), body, size)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var f api.UploadedFile
	return &f, jsonDecode(resp.Body, &f)
}

// DeleteUpload removes an upload's files.
func (c *Client) DeleteUpload(ctx context.Context, upload string) error {
	return c.Do(ctx, Request{Method: http.MethodDelete, Path: "/uploads/" + url.PathEscape(upload)}, nil)
}

// Import starts an import (a task), or with DryRun returns its plan.
func (c *Client) Import(ctx context.Context, req api.ImportRequest) (*api.Task, *api.ImportPlan, error) {
	var raw json.RawMessage
	if err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/imports", Body: req, Idempotent: true}, &raw); err != nil {
		return nil, nil, err
	}
	if req.DryRun {
		var p api.ImportPlan
		return nil, &p, json.Unmarshal(raw, &p)
	}
	var t api.Task
	return &t, nil, json.Unmarshal(raw, &t)
}

// Export starts writing a VM as an OVF package.
func (c *Client) Export(ctx context.Context, vm string, req api.ExportRequest) (*api.Task, error) {
	return c.Action(ctx, api.KindVM, vm, "export", req)
}

// DownloadExport streams one file of a finished export ("" and ova=true:
// the whole OVA).
func (c *Client) DownloadExport(ctx context.Context, id, name string) (io.ReadCloser, int64, error) {
	p := "/api/v1/exports/" + url.PathEscape(id) + "/ova"
	if name != "" {
		p = "/api/v1/exports/" + url.PathEscape(id) + "/files?name=" + url.QueryEscape(name)
	}
	resp, err := c.raw(ctx, http.MethodGet, p, nil, -1)
	if err != nil {
		return nil, 0, err
	}
	n, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return resp.Body, n, nil
}

// DeleteExport removes an export's files.
func (c *Client) DeleteExport(ctx context.Context, id string) error {
	return c.Do(ctx, Request{Method: http.MethodDelete, Path: "/exports/" + url.PathEscape(id)}, nil)
}

// raw sends a request with a raw body and returns the answer to read.
func (c *Client) raw(ctx context.Context, method, path string, body io.Reader, size int64) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if size >= 0 && body != nil {
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// Bulk data goes over HTTP/1.1, as the server-to-agent leg does: one
	// stream per connection, no HTTP/2 flow-control windows in its way.
	resp, err := c.bulk().Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the vdc server at %s: %w", c.base, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

var bulkClients sync.Map // *Client -> *http.Client

// bulk is an HTTP/1.1 client with large buffers for whole files.
func (c *Client) bulk() *http.Client {
	if hc, ok := bulkClients.Load(c); ok {
		return hc.(*http.Client)
	}
	tr := c.ws.Transport.(*http.Transport).Clone()
	tr.WriteBufferSize, tr.ReadBufferSize = 256<<10, 256<<10
	hc, _ := bulkClients.LoadOrStore(c, &http.Client{Transport: tr})
	return hc.(*http.Client)
}
