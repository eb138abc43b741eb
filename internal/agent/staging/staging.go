// Package staging is the host agent's staging area for imports and
// exports. Staging folders hold what an import or an export works on: an
// uploaded or downloaded package, disks unpacked from it, disks converted
// for an export. Each lives in .vdc-staging/<id> of a datastore, so that
// the data stays on the storage it came for and a hostile package can
// touch nothing outside its folder.
//
// It serves the folders' part of the agent API (upload, fetch, index,
// convert, export, delete), streaming the progress of long jobs as JSON
// lines; the server's side is agent.Client's Staging* calls. It calls the
// disk and ovf packages, and agenthttp; the agent gives it how to find a
// datastore's files.
package staging

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/ovf"
)

// stagingDir is the folder of a datastore that holds its staging folders.
const stagingDir = ".vdc-staging"

// Area serves the staging folders of a host's datastores
// (/agent/v1/staging/...).
type Area struct {
	// Resolve gives the path of rel in the host's datastore ds, refusing a
	// datastore the host does not use and a path that leaves it.
	Resolve func(ds, rel string) (string, error)
	// BeforeConvert, when set, is called before each imported disk is
	// converted, and an error from it fails the conversion (tests).
	BeforeConvert func(ctx context.Context) error
}

// Package is what a staging folder holds, as the agent read it.
type Package struct {
	// OVA is the name of the OVA file in the folder when the package is
	// one; the other files are in the folder under their own names.
	OVA     string       `json:"ova,omitempty"`
	Package *ovf.Package `json:"package"`
}

// File is one file of a staging folder.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

var stagingIDRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-]{0,80}$`)

// staging locks: one writer per folder at a time.
var stagingLocks sync.Map

func lockStaging(dir string) func() {
	m, _ := stagingLocks.LoadOrStore(dir, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// Routes serves the staging API on mux.
func (a *Area) Routes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /agent/v1/staging/{id}/files", a.stagingPut)
	mux.HandleFunc("GET /agent/v1/staging/{id}/files", a.stagingGetFile)
	mux.HandleFunc("GET /agent/v1/staging/{id}", a.stagingIndex)
	mux.HandleFunc("DELETE /agent/v1/staging/{id}", a.stagingDelete)
	mux.HandleFunc("POST /agent/v1/staging/{id}/fetch", a.stagingFetch)
	mux.HandleFunc("POST /agent/v1/staging/{id}/convert", a.stagingConvert)
	mux.HandleFunc("POST /agent/v1/staging/{id}/export", a.stagingExport)
}

// stagingPath resolves a staging folder of a datastore.
func (a *Area) stagingPath(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if !stagingIDRE.MatchString(id) {
		return "", api.Errorf(api.ErrInvalid, "bad staging id %q", id)
	}
	p, err := a.Resolve(r.URL.Query().Get("datastore"), stagingDir+"/"+id)
	if err == nil {
		sweepStaging(filepath.Dir(p), time.Now())
	}
	return p, err
}

// stagingMaxAge is how long an abandoned staging folder (an upload never
// imported, an export never downloaded) is kept.
const stagingMaxAge = 24 * time.Hour

var lastSweep sync.Map // staging root -> time of the last sweep

// sweepStaging removes staging folders nobody touched for a day, at most
// once an hour per datastore.
func sweepStaging(root string, now time.Time) {
	if t, ok := lastSweep.Load(root); ok && now.Sub(t.(time.Time)) < time.Hour {
		return
	}
	lastSweep.Store(root, now)
	ents, _ := os.ReadDir(root)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && e.IsDir() && now.Sub(fi.ModTime()) > stagingMaxAge {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

func readIndex(dir string) (*Package, error) {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if errors.Is(err, os.ErrNotExist) {
		return &Package{Package: ovf.NewPackage()}, nil
	}
	if err != nil {
		return nil, err
	}
	var sp Package
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("staging index %s: %w", dir, err)
	}
	return &sp, nil
}

func writeIndex(dir string, sp *Package) error {
	b, err := json.Marshal(sp)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".index.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "index.json"))
}

// filesDir is where a staging folder keeps the package's files.
func filesDir(dir string) string { return filepath.Join(dir, "files") }

// receive writes one file of a package into a staging folder from r,
// reading it as it goes: an OVA is scanned (tar checks, offsets, digests)
// while it is written, so it is read once. A file that fails any check is
// removed.
func receive(dir, name string, r io.Reader, want int64) (File, error) {
	res := File{Name: name}
	clean := path.Clean(name)
	if err := ovf.CheckHref(clean); err != nil || clean != name || strings.HasPrefix(name, ".") || name == "index.json" {
		return res, api.Errorf(api.ErrInvalid, "bad file name %q: it must be a relative path inside the package", name)
	}
	defer lockStaging(dir)()
	sp, err := readIndex(dir)
	if err != nil {
		return res, err
	}
	if _, dup := sp.Package.Files[name]; dup || sp.OVA == name {
		return res, api.Errorf(api.ErrConflict, "%s was already received", name)
	}
	dst := filepath.Join(filesDir(dir), filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return res, err
	}
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return res, fmt.Errorf("receive %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.Remove(dst)
		}
	}()
	isOVA := strings.HasSuffix(strings.ToLower(name), ".ova")
	if isOVA && (sp.OVA != "" || len(sp.Package.Files) > 0) {
		return res, api.Errorf(api.ErrConflict, "an OVA must come alone; this upload already holds files")
	}
	consume := func(in io.Reader) error {
		if !isOVA {
			if err := sp.Package.Add(name, 0, want, in); err != nil {
				return err
			}
			if extra, _ := io.Copy(io.Discard, in); extra > 0 {
				return api.Errorf(api.ErrInvalid, "%s is longer than the %d bytes announced", name, want)
			}
			return nil
		}
		err := ovf.ScanOVA(in, func(e ovf.TarEntry, data io.Reader) error {
			return sp.Package.Add(e.Name, e.Offset, e.Size, data)
		})
		if err == nil && sp.Package.DescriptorName == "" {
			err = api.Errorf(api.ErrInvalid, "the OVA holds no .ovf descriptor (it holds %s)", strings.Join(firstN(sp.Package.Order, 8), ", "))
		}
		return err
	}
	n, err := pipeline(r, f, consume)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, ovf.ErrInvalid) {
			err = agenthttp.WithClass(err, api.ErrInvalid)
		}
		return res, fmt.Errorf("receive %s: %w", name, err)
	}
	if want >= 0 && n != want {
		return res, api.Errorf(api.ErrInvalid, "receive %s: got %d bytes of %d", name, n, want)
	}
	if isOVA {
		sp.OVA = name
	} else if pf := sp.Package.Files[name]; pf != nil {
		res.SHA256 = pf.Digests["SHA256"]
	}
	if err := writeIndex(dir, sp); err != nil {
		return res, err
	}
	ok = true
	res.Size = n
	return res, nil
}

// pipeline copies r into w and hands the same bytes to consume, which runs
// in its own goroutine (tar checks, hashing): the hashing overlaps the
// network and the disk instead of following them. A consumer that refuses
// the data stops the copy.
func pipeline(r io.Reader, w io.Writer, consume func(io.Reader) error) (int64, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := consume(pr)
		if err == nil {
			_, err = io.Copy(io.Discard, pr) // the tar's trailing blocks
		}
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.Close()
		}
		done <- err
	}()
	buf := make([]byte, 1<<20)
	var n int64
	var copyErr error
	for {
		m, rerr := r.Read(buf)
		if m > 0 {
			if _, err := w.Write(buf[:m]); err != nil {
				copyErr = err
				break
			}
			if _, err := pw.Write(buf[:m]); err != nil {
				break // the consumer stopped; its error says why
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			copyErr = rerr
			break
		}
	}
	pw.CloseWithError(copyErr)
	cerr := <-done
	if copyErr != nil {
		return n, copyErr
	}
	return n, cerr
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

// PUT /agent/v1/staging/{id}/files?datastore=D&name=N: the body is one
// file of a package (or a whole OVA).
func (a *Area) stagingPut(w http.ResponseWriter, r *http.Request) {
	dir, err := a.stagingPath(r)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	if r.ContentLength < 0 {
		agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "upload needs a Content-Length"))
		return
	}
	if err := checkFree(dir, r.ContentLength); err != nil {
		agenthttp.Fail(w, err)
		return
	}
	res, err := receive(dir, r.URL.Query().Get("name"), r.Body, r.ContentLength)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, res)
}

func freeBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

// checkFree refuses work that cannot fit on the datastore.
func checkFree(dir string, need int64) error {
	free, err := freeBytes(dir)
	if err != nil {
		return err
	}
	if free < need+64<<20 {
		return api.Errorf(api.ErrConflict, "the datastore has %s free; %s is needed", api.Size(free), api.Size(need+64<<20))
	}
	return nil
}

// GET /agent/v1/staging/{id}?datastore=D: what the folder holds.
func (a *Area) stagingIndex(w http.ResponseWriter, r *http.Request) {
	dir, err := a.stagingPath(r)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	if _, err := os.Stat(dir); err != nil {
		agenthttp.Fail(w, api.Errorf(api.ErrNotFound, "staging folder %s does not exist", r.PathValue("id")))
		return
	}
	sp, err := readIndex(dir)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, sp)
}

// GET /agent/v1/staging/{id}/files?datastore=D&name=N streams a file.
func (a *Area) stagingGetFile(w http.ResponseWriter, r *http.Request) {
	dir, err := a.stagingPath(r)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	name := r.URL.Query().Get("name")
	if ovf.CheckHref(name) != nil || path.Clean(name) != name {
		agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "bad file name %q", name))
		return
	}
	f, err := os.Open(filepath.Join(filesDir(dir), filepath.FromSlash(name)))
	if err != nil {
		agenthttp.Fail(w, api.Errorf(api.ErrNotFound, "%s is not in staging folder %s", name, r.PathValue("id")))
		return
	}
	defer f.Close()
	fi, _ := f.Stat()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(fi.Size()))
	_, _ = io.CopyBuffer(w, f, make([]byte, 1<<20))
}

// DELETE /agent/v1/staging/{id}?datastore=D
func (a *Area) stagingDelete(w http.ResponseWriter, r *http.Request) {
	dir, err := a.stagingPath(r)
	if err == nil {
		err = os.RemoveAll(dir)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// FetchRequest has the agent download a package or disk.
type FetchRequest struct {
	URL string `json:"url"`
	// DescriptorOnly stops once the descriptor is read (a dry run).
	DescriptorOnly bool `json:"descriptorOnly,omitempty"`
}

// fetchClient downloads packages: no cookies, bounded redirects, http(s)
// only, and no timeout on the body (disks are big) but one on headers.
var fetchClient = &http.Client{
	Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute, TLSHandshakeTimeout: 30 * time.Second},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errors.New("too many redirects")
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to %s: only http and https are fetched", req.URL.Scheme)
		}
		return nil
	},
}

func get(ctx context.Context, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := fetchClient.Do(req)
	if err != nil {
		return nil, api.Errorf(api.ErrUnprocessable, "fetch %s: %v", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, api.Errorf(api.ErrUnprocessable, "fetch %s: HTTP %s", u, resp.Status)
	}
	return resp, nil
}

// POST /agent/v1/staging/{id}/fetch?datastore=D: download an OVA, an OVF
// with the files it references (relative to its URL), or a disk image.
func (a *Area) stagingFetch(w http.ResponseWriter, r *http.Request) {
	var req FetchRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "fetch %q: only http and https URLs are fetched", req.URL))
		return
	}
	dir, err := a.stagingPath(r)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	streamJob(w, func(progress func(float64, string)) (any, error) {
		return fetch(r.Context(), dir, u, req.DescriptorOnly, progress)
	})
}

func fetch(ctx context.Context, dir string, u *url.URL, descriptorOnly bool, progress func(float64, string)) (*Package, error) {
	resp, err := get(ctx, u.String())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" || strings.HasPrefix(name, ".") {
		name = "download"
	}
	total := resp.ContentLength
	body := &progressReader{r: resp.Body, fn: func(n, _ int64) {
		if total > 0 {
			progress(float64(n)/float64(total), fmt.Sprintf("downloading %s: %s of %s", name, api.Size(n), api.Size(total)))
		}
	}}
	isOVA := strings.HasSuffix(strings.ToLower(name), ".ova")
	if descriptorOnly {
		return fetchDescriptor(body, name, isOVA)
	}
	if total > 0 {
		if err := checkFree(dir, total); err != nil {
			return nil, err
		}
	}
	if _, err := receive(dir, name, body, total); err != nil {
		return nil, err
	}
	sp, err := readIndex(dir)
	if err != nil || isOVA || !strings.HasSuffix(strings.ToLower(name), ".ovf") {
		return sp, err
	}
	// An OVF: fetch the files it references, beside it.
	if err := fetchReferenced(ctx, dir, u, sp, progress); err != nil {
		return nil, err
	}
	return readIndex(dir)
}

// fetchDescriptor reads only the descriptor (and manifest) of the package
// name that body streams, without staging its disks.
func fetchDescriptor(body io.Reader, name string, isOVA bool) (*Package, error) {
	sp := &Package{Package: ovf.NewPackage()}
	if !isOVA {
		data, err := io.ReadAll(io.LimitReader(body, ovf.MaxDescriptorBytes+1))
		if err != nil {
			return nil, err
		}
		return sp, sp.Package.AddBytes(name, data)
	}
	errDone := errors.New("done")
	err := ovf.ScanOVA(body, func(e ovf.TarEntry, data io.Reader) error {
		if strings.HasSuffix(e.Name, ".ovf") || strings.HasSuffix(e.Name, ".mf") {
			if err := sp.Package.Add(e.Name, e.Offset, e.Size, data); err != nil {
				return err
			}
			return nil
		}
		return errDone
	})
	if err != nil && !errors.Is(err, errDone) {
		return nil, wrapInvalid(err)
	}
	sp.OVA = name
	return sp, nil
}

// fetchReferenced downloads the files the staged OVF references, relative
// to its URL u, into dir beside it.
func fetchReferenced(ctx context.Context, dir string, u *url.URL, sp *Package, progress func(float64, string)) error {
	env, err := ovf.Parse(sp.Package.Descriptor)
	if err != nil {
		return wrapInvalid(err)
	}
	for _, f := range env.Files {
		if err := ovf.CheckHref(f.Href); err != nil {
			return wrapInvalid(err)
		}
		names := []string{f.Href}
		if f.ChunkSize > 0 {
			names = nil
			for i := 0; i < 100000; i++ {
				names = append(names, ovf.ChunkName(f.Href, i))
				if f.Size > 0 && int64(i+1)*f.ChunkSize >= f.Size {
					break
				}
			}
		}
		for _, n := range names {
			ref, _ := url.Parse(n)
			fu := u.ResolveReference(ref)
			fr, err := get(ctx, fu.String())
			if err != nil {
				return err
			}
			fb := &progressReader{r: fr.Body, fn: func(x, _ int64) {
				progress(0, fmt.Sprintf("downloading %s: %s", n, api.Size(x)))
			}}
			_, err = receive(dir, n, fb, fr.ContentLength)
			fr.Body.Close()
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func wrapInvalid(err error) error {
	if errors.Is(err, ovf.ErrInvalid) || errors.Is(err, disk.ErrBadImage) {
		return agenthttp.WithClass(err, api.ErrInvalid)
	}
	return err
}

// streamJob runs a long job and streams its progress as JSON lines
// ({"progress":0.5,"message":"..."}), then one line with its result or
// error: the server follows long work without a second connection.
func streamJob(w http.ResponseWriter, job func(progress func(float64, string)) (any, error)) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	var mu sync.Mutex
	enc := json.NewEncoder(w)
	send := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(v)
		if fl != nil {
			fl.Flush()
		}
	}
	var last time.Time
	res, err := job(func(p float64, msg string) {
		if now := time.Now(); now.Sub(last) > 250*time.Millisecond || p >= 1 {
			last = now
			send(JobLine{Progress: p, Message: msg})
		}
	})
	if err != nil {
		e, status := api.ErrorFrom(wrapInvalid(err))
		e.Status = status
		send(JobLine{Error: e})
		return
	}
	b, _ := json.Marshal(res)
	send(JobLine{Done: true, Result: b})
}

// JobLine is one line of a streamed job.
type JobLine struct {
	Progress float64         `json:"progress,omitempty"`
	Message  string          `json:"message,omitempty"`
	Done     bool            `json:"done,omitempty"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *api.Error      `json:"error,omitempty"`
}
