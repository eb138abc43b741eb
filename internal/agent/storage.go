package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"

	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/agent/registry"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// DiskResize is the agent API's body for growing a disk.
type DiskResize struct {
	Size int64 `json:"size"`
}

// RemoveFilesRequest lists disk files nothing uses any more.
type RemoveFilesRequest struct {
	Paths []string `json:"paths"`
}

func (a *Agent) storageRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /agent/v1/vms/{id}/snapshot", a.snapshotVM)
	mux.HandleFunc("POST /agent/v1/vms/{id}/revert", a.revertVM)
	mux.HandleFunc("POST /agent/v1/vms/{id}/merge", a.mergeDisk)
	mux.HandleFunc("POST /agent/v1/vms/{id}/disks", a.addDisk)
	mux.HandleFunc("PUT /agent/v1/vms/{id}/disks/{disk}/size", a.resizeDisk)
	mux.HandleFunc("DELETE /agent/v1/vms/{id}/disks/{disk}", a.removeDisk)
	mux.HandleFunc("POST /agent/v1/files/remove", a.removeFiles)
	mux.HandleFunc("POST /agent/v1/disk-copies", a.startCopy)
	mux.HandleFunc("POST /agent/v1/datastores/{id}/import", a.startImport)
	mux.HandleFunc("GET /agent/v1/jobs/{id}", a.getJob)
}

func (a *Agent) storage() (hypervisor.Storage, error) {
	s, ok := a.cfg.Driver.(hypervisor.Storage)
	if !ok {
		return nil, fmt.Errorf("disk chains, snapshots and clones: %w", hypervisor.ErrNotSupported)
	}
	return s, nil
}

// withVM runs a storage operation on a VM under its lock, and saves the
// VM's config as the operation changed it, so that a restarted agent (and
// the next start) uses the files the VM uses now.
func (a *Agent) withVM(w http.ResponseWriter, r *http.Request, body any, op func(context.Context, hypervisor.Storage, *hypervisor.VMConfig) (any, error)) {
	if body != nil && !agenthttp.Decode(w, r, body) {
		return
	}
	st, err := a.storage()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	e, err := a.vms.Get(r.PathValue("id"))
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	e.Op.Lock()
	defer e.Op.Unlock()
	if a.vms.IsIncoming(e) {
		agenthttp.Fail(w, fmt.Errorf("vm %s is being received by a migration: %w", e.Cfg.Name, hypervisor.ErrWrongState))
		return
	}
	cfg := e.Cfg
	cfg.Disks = slices.Clone(e.Cfg.Disks)
	out, opErr := op(r.Context(), st, &cfg)
	if !equalJSON(cfg, e.Cfg) {
		if err := a.vms.SaveConfig(e, cfg); err != nil && opErr == nil {
			opErr = err
		}
	}
	if opErr != nil {
		agenthttp.Fail(w, opErr)
		return
	}
	if out == nil {
		// The state, with the disks as they are now (their files changed).
		st, _ := a.vms.Observe(r.Context(), e.Cfg.ID, e)
		st.Disks = registry.MeasureDisks(r.Context(), a.cfg.Driver, e.Cfg, true)
		out = st
	}
	agenthttp.Reply(w, http.StatusOK, out)
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func setPath(cfg *hypervisor.VMConfig, disk, path string) {
	for i := range cfg.Disks {
		if cfg.Disks[i].Name == disk {
			cfg.Disks[i].Path = path
		}
	}
}

// POST /agent/v1/vms/{id}/snapshot
func (a *Agent) snapshotVM(w http.ResponseWriter, r *http.Request) {
	var req hypervisor.SnapshotRequest
	a.withVM(w, r, &req, func(ctx context.Context, st hypervisor.Storage, cfg *hypervisor.VMConfig) (any, error) {
		res, err := st.Snapshot(ctx, cfg.ID, req)
		if err == nil {
			for d, p := range req.Overlays {
				setPath(cfg, d, p)
			}
		}
		return res, err
	})
}

// POST /agent/v1/vms/{id}/revert
func (a *Agent) revertVM(w http.ResponseWriter, r *http.Request) {
	var req hypervisor.RevertRequest
	a.withVM(w, r, &req, func(ctx context.Context, st hypervisor.Storage, cfg *hypervisor.VMConfig) (any, error) {
		err := st.Revert(ctx, cfg.ID, req)
		if err == nil {
			cfg.Disks = nil
			for _, d := range req.Disks {
				d.Source, d.Linked = "", false
				cfg.Disks = append(cfg.Disks, d)
			}
			if req.CPUs > 0 {
				cfg.CPUs, cfg.MemoryBytes = req.CPUs, req.MemoryBytes
			}
		}
		return nil, err
	})
}

// POST /agent/v1/vms/{id}/merge
func (a *Agent) mergeDisk(w http.ResponseWriter, r *http.Request) {
	var m hypervisor.DiskMerge
	a.withVM(w, r, &m, func(ctx context.Context, st hypervisor.Storage, cfg *hypervisor.VMConfig) (any, error) {
		err := st.MergeDisk(ctx, cfg.ID, m)
		if err == nil && m.Active {
			setPath(cfg, m.Disk, m.Base)
		}
		return struct{}{}, err
	})
}

// POST /agent/v1/vms/{id}/disks
func (a *Agent) addDisk(w http.ResponseWriter, r *http.Request) {
	var d hypervisor.DiskConfig
	a.withVM(w, r, &d, func(ctx context.Context, st hypervisor.Storage, cfg *hypervisor.VMConfig) (any, error) {
		if err := st.AddDisk(ctx, cfg.ID, d); err != nil {
			return nil, err
		}
		cfg.Disks = append(cfg.Disks, d)
		return nil, nil
	})
}

// PUT /agent/v1/vms/{id}/disks/{disk}/size
func (a *Agent) resizeDisk(w http.ResponseWriter, r *http.Request) {
	var req DiskResize
	a.withVM(w, r, &req, func(ctx context.Context, st hypervisor.Storage, cfg *hypervisor.VMConfig) (any, error) {
		name := r.PathValue("disk")
		if err := st.ResizeDisk(ctx, cfg.ID, name, req.Size); err != nil {
			return nil, err
		}
		for i := range cfg.Disks {
			if cfg.Disks[i].Name == name {
				cfg.Disks[i].SizeBytes = req.Size
			}
		}
		return nil, nil
	})
}

// DELETE /agent/v1/vms/{id}/disks/{disk}: unplugs it; the file stays for
// the server to remove when nothing needs it.
func (a *Agent) removeDisk(w http.ResponseWriter, r *http.Request) {
	a.withVM(w, r, nil, func(ctx context.Context, st hypervisor.Storage, cfg *hypervisor.VMConfig) (any, error) {
		name := r.PathValue("disk")
		if err := st.RemoveDisk(ctx, cfg.ID, name); err != nil {
			return nil, err
		}
		cfg.Disks = slices.DeleteFunc(cfg.Disks, func(d hypervisor.DiskConfig) bool { return d.Name == name })
		return nil, nil
	})
}

// POST /agent/v1/files/remove
func (a *Agent) removeFiles(w http.ResponseWriter, r *http.Request) {
	var req RemoveFilesRequest
	if !agenthttp.Decode(w, r, &req) {
		return
	}
	st, err := a.storage()
	if err != nil {
		agenthttp.Fail(w, err)
		return
	}
	for _, p := range req.Paths {
		if err := a.inDatastore(p); err != nil {
			agenthttp.Fail(w, err)
			return
		}
	}
	if err := st.RemoveFiles(r.Context(), req.Paths); err != nil {
		agenthttp.Fail(w, err)
		return
	}
	for _, p := range req.Paths {
		_ = os.Remove(filepath.Dir(p)) // the VM's folder, once empty
	}
	w.WriteHeader(http.StatusNoContent)
}
