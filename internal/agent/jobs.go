package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/agent/staging"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// Job states.
const (
	JobRunning   = "running"
	JobSucceeded = "succeeded"
	JobFailed    = "failed"
)

// Job is long disk work on a host (a full clone's copy, an image
// download) that the server follows.
type Job struct {
	ID    string `json:"id"`
	State string `json:"state"`
	Done  int64  `json:"done"`
	Total int64  `json:"total"`
	Error string `json:"error,omitempty"`
	// Result of an image import: what the file is.
	File *FileResult `json:"file,omitempty"`
}

type jobs struct {
	mu   sync.Mutex
	byID map[string]*Job
}

// start runs a job in the background and returns a copy of it as it
// starts (the job itself changes under the lock).
func (j *jobs) start(run func(ctx context.Context, progress func(done, total int64)) (*FileResult, error)) Job {
	job := &Job{ID: uuid.NewString(), State: JobRunning}
	j.mu.Lock()
	if j.byID == nil {
		j.byID = map[string]*Job{}
	}
	j.byID[job.ID] = job
	started := *job
	j.mu.Unlock()
	go func() {
		res, err := run(context.Background(), func(done, total int64) {
			j.mu.Lock()
			job.Done, job.Total = done, total
			j.mu.Unlock()
		})
		j.mu.Lock()
		defer j.mu.Unlock()
		if err != nil {
			job.State, job.Error = JobFailed, err.Error()
		} else {
			job.State, job.File = JobSucceeded, res
			job.Done = job.Total
		}
		// Kept for an hour for the server to read.
		time.AfterFunc(time.Hour, func() {
			j.mu.Lock()
			delete(j.byID, job.ID)
			j.mu.Unlock()
		})
	}()
	return started
}

func (j *jobs) get(id string) (Job, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, ok := j.byID[id]
	if !ok {
		return Job{}, false
	}
	c := *job
	return c, true
}

// POST /agent/v1/disk-copies: a full copy of a disk file, or of a running
// VM's disk, into a new file; answers with the job.
func (a *Agent) startCopy(w http.ResponseWriter, r *http.Request) {
	var c hypervisor.DiskCopy
	if !agenthttp.Decode(w, r, &c) {
		return
	}
	st, err := a.storage()
	if err == nil {
		err = a.inDatastore(c.Dst)
	}
	if err == nil && c.File != "" {
		c.File, err = a.readableFile("disk", c.File)
	}
	if err == nil && c.VM != "" {
		_, err = a.vms.Get(c.VM)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	job := a.jobs.start(func(ctx context.Context, progress func(done, total int64)) (*FileResult, error) {
		return nil, st.CopyDisk(ctx, c, progress)
	})
	agenthttp.Reply(w, http.StatusAccepted, job)
}

// ImportRequest fetches a disk image into a datastore.
type ImportRequest struct {
	Path   string `json:"path"`   // relative to the datastore
	Source string `json:"source"` // http(s) URL or absolute path of a file in a datastore of this host
	SHA256 string `json:"sha256,omitempty"`
}

// POST /agent/v1/datastores/{id}/import
func (a *Agent) startImport(w http.ResponseWriter, r *http.Request) {
	var req ImportRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	path, err := a.datastorePath(r.PathValue("id"), req.Path)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	// A file is read only from a datastore, symlinks resolved: an import
	// is no way to read (or learn the size of) the host's other files.
	from := req.Source
	if !isURL(req.Source) {
		if from, err = a.readableFile("image source", req.Source); err != nil {
			agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "image source %s is not an http(s) URL or a file in a datastore of host %s", req.Source, a.cfg.Name))
			return
		}
	}
	job := a.jobs.start(func(ctx context.Context, progress func(done, total int64)) (*FileResult, error) {
		return importImage(ctx, req.Source, from, path, req.SHA256, progress)
	})
	agenthttp.Reply(w, http.StatusAccepted, job)
}

// importImage fetches an image next to its final name, checks it is a
// standalone qcow2 or raw disk qemu-img reads, and renames it into place.
// source names it in messages; from is what is read (source, or the file
// it resolves to).
func importImage(ctx context.Context, source, from, path, wantSum string, progress func(done, total int64)) (*FileResult, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	var in io.ReadCloser
	var total int64 = -1
	if isURL(source) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, source, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", source, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("download %s: HTTP %s", source, resp.Status)
		}
		in, total = resp.Body, resp.ContentLength
	} else {
		f, err := os.Open(from)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", source, err)
		}
		if fi, err := f.Stat(); err == nil {
			total = fi.Size()
		}
		in = f
	}
	defer in.Close()
	if free, err := freeSpace(filepath.Dir(path)); err == nil && total > 0 && free < total+64<<20 {
		return nil, fmt.Errorf("the datastore has %s free; the image takes %s: %w", api.Size(free), api.Size(total), hypervisor.ErrNoSpace)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".import*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), staging.NewProgressReader(in, total, progress))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", source, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if wantSum != "" && !strings.EqualFold(sum, wantSum) {
		return nil, fmt.Errorf("%s has SHA-256 %s, not %s as expected", source, sum, wantSum)
	}
	info, err := disk.Inspect(ctx, tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("%s is not a disk image qemu-img can read: %w", source, err)
	}
	switch info.Format {
	case "qcow2":
		if err := disk.Check(ctx, tmp.Name()); err != nil {
			return nil, fmt.Errorf("%s is a damaged qcow2 image: %w", source, err)
		}
	case "raw":
		// qemu-img reads any file as raw: a disk is whole sectors at least.
		if n < 1<<20 || n%512 != 0 {
			return nil, fmt.Errorf("%s is not a disk image: as raw it would be %d bytes, not a whole number of 512-byte sectors of at least 1 MiB", source, n)
		}
	default:
		return nil, fmt.Errorf("%s is a %s image; import qcow2 or raw images (convert others with vdc import disk)", source, info.Format)
	}
	if info.BackingFile != "" {
		return nil, fmt.Errorf("%s depends on a backing file (%s); import a standalone image", source, info.BackingFile)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, err
	}
	return &FileResult{SizeBytes: n, SHA256: sum, Format: info.Format, VirtualSize: info.VirtualSize}, nil
}

// GET /agent/v1/jobs/{id}
func (a *Agent) getJob(w http.ResponseWriter, r *http.Request) {
	job, ok := a.jobs.get(r.PathValue("id"))
	if !ok {
		agenthttp.Fail(w, api.Errorf(api.ErrNotFound, "no job %s on this host (the agent restarted?)", r.PathValue("id")))
		return
	}
	agenthttp.Reply(w, http.StatusOK, job)
}

func freeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}
