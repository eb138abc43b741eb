package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/agent/staging"
)

// The staging area's wire types, under the names the server and the
// control packages use. They are aliases so that those packages, being
// reshaped by others at the same time, need not change with this move;
// new code should name the staging package's types.
type (
	StagedPackage  = staging.Package
	StagingFile    = staging.File
	FetchRequest   = staging.FetchRequest
	ConvertDisk    = staging.ConvertDisk
	ConvertRequest = staging.ConvertRequest
	ConvertedDisk  = staging.ConvertedDisk
	ExportDisk     = staging.ExportDisk
	ExportRequest  = staging.ExportRequest
	ExportedFile   = staging.ExportedFile
)

func stagingURL(ds, id, suffix string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	q.Set("datastore", ds)
	return "/agent/v1/staging/" + url.PathEscape(id) + suffix + "?" + q.Encode()
}

// bulkTransports carry uploads and downloads: larger buffers than the
// default 4 KiB make fewer, fuller TLS records and syscalls when a whole
// disk goes through. Kept apart from the API transports so that their
// many idle connections do not each hold the big buffers.
var bulkTransports sync.Map // *Client+host ID -> *http.Transport

func (c *Client) bulk(hostID string) *http.Transport {
	key := fmt.Sprintf("%p/%s", c, hostID)
	if t, ok := bulkTransports.Load(key); ok {
		return t.(*http.Transport)
	}
	t := c.transport(hostID).Clone()
	t.WriteBufferSize, t.ReadBufferSize, t.MaxIdleConnsPerHost = 256<<10, 256<<10, 2
	got, _ := bulkTransports.LoadOrStore(key, t)
	return got.(*http.Transport)
}

// open sends a request and returns the response for the caller to read
// (streams: files, job progress).
func (c *Client) open(ctx context.Context, h Target, method, path string, body io.Reader, size int64) (*http.Response, error) {
	return c.send(ctx, h, c.bulk(h.ID), method, path, body, size)
}

// job runs a streamed job on the host: progress as it comes, then the
// result into out.
func (c *Client) job(ctx context.Context, h Target, path string, in any, progress func(float64, string), out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	resp, err := c.open(ctx, h, http.MethodPost, path, bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var l staging.JobLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("host %s: bad job output: %w", h.Name, err)
		}
		switch {
		case l.Error != nil:
			l.Error.Status = api.StatusOf(l.Error.Code)
			return fmt.Errorf("host %s: %w", h.Name, l.Error)
		case l.Done:
			if out == nil {
				return nil
			}
			return json.Unmarshal(l.Result, out)
		case progress != nil:
			progress(l.Progress, l.Message)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("host %s: %w", h.Name, agenthttp.WithClass(err, api.ErrUnavailable))
	}
	return api.Errorf(api.ErrUnavailable, "host %s: the job ended without a result (did the agent stop?)", h.Name)
}

// StagingPut streams one file into a staging folder of a datastore.
func (c *Client) StagingPut(ctx context.Context, h Target, ds, id, name string, body io.Reader, size int64) (staging.File, error) {
	var res staging.File
	resp, err := c.open(ctx, h, http.MethodPut, stagingURL(ds, id, "/files", url.Values{"name": {name}}), body, size)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	return res, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res)
}

// StagingIndex reads what a staging folder holds.
func (c *Client) StagingIndex(ctx context.Context, h Target, ds, id string) (*staging.Package, error) {
	var sp staging.Package
	err := c.do(ctx, h, http.MethodGet, stagingURL(ds, id, "", nil), nil, &sp)
	return &sp, err
}

// StagingFetch has the host download a package into a staging folder.
func (c *Client) StagingFetch(ctx context.Context, h Target, ds, id string, req staging.FetchRequest, progress func(float64, string)) (*staging.Package, error) {
	var sp staging.Package
	err := c.job(ctx, h, stagingURL(ds, id, "/fetch", nil), req, progress, &sp)
	return &sp, err
}

// StagingConvert makes VM disks from a staged package.
func (c *Client) StagingConvert(ctx context.Context, h Target, ds, id string, req staging.ConvertRequest, progress func(float64, string)) ([]staging.ConvertedDisk, error) {
	var out []staging.ConvertedDisk
	err := c.job(ctx, h, stagingURL(ds, id, "/convert", nil), req, progress, &out)
	return out, err
}

// StagingExport writes a VM's disks (and given files) into a staging folder.
func (c *Client) StagingExport(ctx context.Context, h Target, ds, id string, req staging.ExportRequest, progress func(float64, string)) ([]staging.ExportedFile, error) {
	var out []staging.ExportedFile
	err := c.job(ctx, h, stagingURL(ds, id, "/export", nil), req, progress, &out)
	return out, err
}

// StagingOpen streams a file of a staging folder.
func (c *Client) StagingOpen(ctx context.Context, h Target, ds, id, name string) (io.ReadCloser, int64, error) {
	resp, err := c.open(ctx, h, http.MethodGet, stagingURL(ds, id, "/files", url.Values{"name": {name}}), nil, -1)
	if err != nil {
		return nil, 0, err
	}
	n, _ := strconv.ParseInt(resp.Header.Get("Content-Length"), 10, 64)
	return resp.Body, n, nil
}

// StagingDelete removes a staging folder.
func (c *Client) StagingDelete(ctx context.Context, h Target, ds, id string) error {
	return c.do(ctx, h, http.MethodDelete, stagingURL(ds, id, "", nil), nil, nil)
}
