package agent

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/agent/imagefetch"
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
		r, err := imagefetch.Fetch(ctx, req.Source, from, path, req.SHA256, progress)
		if err != nil {
			return nil, err
		}
		return &FileResult{SizeBytes: r.SizeBytes, SHA256: r.SHA256, Format: r.Format, VirtualSize: r.VirtualSize}, nil
	})
	agenthttp.Reply(w, http.StatusAccepted, job)
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
