package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// FileResult is the agent's answer to a file upload into a datastore.
type FileResult struct {
	SizeBytes   int64  `json:"sizeBytes"`
	SHA256      string `json:"sha256"`
	Format      string `json:"format,omitempty"` // as qemu-img sees it, when it can
	VirtualSize int64  `json:"virtualSize,omitempty"`
}

// ExecRequest is the agent API's exec call.
type ExecRequest struct {
	hypervisor.ExecRequest
	TimeoutSeconds int `json:"timeoutSeconds"`
}

func (a *Agent) guestRoutes(mux *http.ServeMux) {
	mux.HandleFunc("PUT /agent/v1/datastores/{id}/files", a.putFile)
	mux.HandleFunc("DELETE /agent/v1/datastores/{id}/files", a.deleteFile)
	mux.HandleFunc("POST /agent/v1/vms/{id}/exec", a.exec)
	mux.HandleFunc("GET /agent/v1/vms/{id}/console/log", a.consoleLog)
	mux.HandleFunc("GET /agent/v1/vms/{id}/console", a.console)
	mux.HandleFunc("GET /agent/v1/vms/{id}/vnc", a.vnc)
}

// datastorePath resolves a path inside a datastore this host reports on,
// refusing anything that would leave it.
func (a *Agent) datastorePath(id, rel string) (string, error) {
	a.mu.Lock()
	var ds *api.DatastoreToCheck
	for i := range a.datastores {
		if a.datastores[i].ID == id {
			ds = &a.datastores[i]
		}
	}
	a.mu.Unlock()
	if ds == nil {
		return "", api.Errorf(api.ErrNotFound, "this host does not know datastore %s", id)
	}
	if _, err := a.datastoreRoot(*ds); err != nil {
		return "", api.Errorf(api.ErrConflict, "host %s does not use datastore %s: %v", a.cfg.Name, id, err)
	}
	clean := filepath.Clean("/" + rel)
	if rel == "" || strings.Contains(rel, "..") || clean == "/" {
		return "", api.Errorf(api.ErrInvalid, "bad file path %q", rel)
	}
	p := filepath.Join(ds.Path, clean)
	if err := a.inDatastore(p); err != nil {
		return "", err
	}
	return p, nil
}

// PUT /agent/v1/datastores/{id}/files?path=images/test/kernel: the body
// becomes the file, written beside it first and renamed into place.
func (a *Agent) putFile(w http.ResponseWriter, r *http.Request) {
	path, err := a.datastorePath(r.PathValue("id"), r.URL.Query().Get("path"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		agenthttp.Fail(w, fmt.Errorf("upload %s: %w", path, err))
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".upload*")
	if err != nil {
		agenthttp.Fail(w, fmt.Errorf("upload %s: %w", path, err))
		return
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), r.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		agenthttp.Fail(w, fmt.Errorf("upload %s: %w", path, err))
		return
	}
	if want := r.Header.Get("Content-Length"); want != "" && want != strconv.FormatInt(n, 10) {
		agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "upload %s: got %d bytes of %s", path, n, want))
		return
	}
	res := FileResult{SizeBytes: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	if r.URL.Query().Get("inspect") == "true" && disk.Available() {
		info, err := disk.Inspect(r.Context(), tmp.Name())
		if err != nil {
			agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "upload %s: not a disk image qemu-img can read: %v", path, err))
			return
		}
		if info.Format == "qcow2" {
			if err := disk.Check(r.Context(), tmp.Name()); err != nil {
				agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "upload %s: damaged qcow2: %v", path, err))
				return
			}
		}
		if info.BackingFile != "" {
			agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "upload %s: the image depends on a backing file (%s); upload a standalone image", path, info.BackingFile))
			return
		}
		res.Format, res.VirtualSize = info.Format, info.VirtualSize
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		agenthttp.Fail(w, fmt.Errorf("upload %s: %w", path, err))
		return
	}
	agenthttp.Reply(w, http.StatusOK, res)
}

// DELETE /agent/v1/datastores/{id}/files?path=images/test: removes a file
// or a folder of the datastore.
func (a *Agent) deleteFile(w http.ResponseWriter, r *http.Request) {
	path, err := a.datastorePath(r.PathValue("id"), r.URL.Query().Get("path"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	if err := os.RemoveAll(path); err != nil {
		agenthttp.Fail(w, fmt.Errorf("delete %s: %w", path, err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *Agent) guestAgent() (hypervisor.GuestAgent, error) {
	ga, ok := a.cfg.Driver.(hypervisor.GuestAgent)
	if !ok {
		return nil, fmt.Errorf("guest operations: %w", hypervisor.ErrNotSupported)
	}
	return ga, nil
}

// POST /agent/v1/vms/{id}/exec
func (a *Agent) exec(w http.ResponseWriter, r *http.Request) {
	var req ExecRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	ga, err := a.guestAgent()
	if err == nil {
		_, err = a.vms.Get(r.PathValue("id"))
	}
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(max(req.TimeoutSeconds, 1))*time.Second)
	defer cancel()
	res, err := ga.GuestExec(ctx, r.PathValue("id"), req.ExecRequest)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = api.Errorf(api.ErrUnprocessable, "%v: no answer from the guest agent within %ds", err, req.TimeoutSeconds)
		}
		agenthttp.Fail(w, err)
		return
	}
	agenthttp.Reply(w, http.StatusOK, res)
}

func (a *Agent) consoleDriver() (hypervisor.Console, error) {
	c, ok := a.cfg.Driver.(hypervisor.Console)
	if !ok {
		return nil, fmt.Errorf("serial console: %w", hypervisor.ErrNotSupported)
	}
	return c, nil
}

// GET /agent/v1/vms/{id}/console/log?bytes=N
func (a *Agent) consoleLog(w http.ResponseWriter, r *http.Request) {
	c, err := a.consoleDriver()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
	b, err := c.ConsoleLog(r.Context(), r.PathValue("id"), n)
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(b)
}

// GET /agent/v1/vms/{id}/console: a websocket carrying the serial
// console's bytes both ways.
func (a *Agent) console(w http.ResponseWriter, r *http.Request) {
	c, err := a.consoleDriver()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	a.relay(w, r, c.ConsoleAttach)
}

// GET /agent/v1/vms/{id}/vnc: a websocket carrying the VM's VNC display
// (RFB) both ways. The display itself is a unix socket of this host; this
// mutual-TLS API is the only way to it from elsewhere.
func (a *Agent) vnc(w http.ResponseWriter, r *http.Request) {
	d, ok := a.cfg.Driver.(hypervisor.Display)
	if !ok {
		agenthttp.Fail(w, fmt.Errorf("VNC display: %w", hypervisor.ErrNotSupported))
		return
	}
	a.relay(w, r, d.DisplayAttach)
}

// relay connects to a stream of the VM in the path and bridges it to a
// websocket.
func (a *Agent) relay(w http.ResponseWriter, r *http.Request, attach func(context.Context, string) (io.ReadWriteCloser, error)) {
	conn, err := attach(r.Context(), r.PathValue("id"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	defer conn.Close()
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	Bridge(r.Context(), ws, conn)
}

// Bridge copies bytes between a websocket (binary messages) and a stream
// until either side ends.
func Bridge(ctx context.Context, ws *websocket.Conn, stream io.ReadWriter) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		buf := make([]byte, 32<<10)
		for {
			n, err := stream.Read(buf)
			if n > 0 {
				if werr := ws.Write(ctx, websocket.MessageBinary, buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		if _, err := stream.Write(b); err != nil {
			return
		}
	}
}
