package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/ovf"
)

type exportParams struct {
	Format    string `json:"format"`
	Version   string `json:"version"`
	Staging   string `json:"staging"`
	Datastore string `json:"datastore"`
}

// POST /api/v1/vms/{name}/export: write a VM that is off as an OVF package
// (streamOptimized VMDKs, SHA-256 manifest) into a staging folder, to be
// downloaded from /api/v1/exports/{id}.
func (s *Server) exportVM(w http.ResponseWriter, r *http.Request) {
	var req api.ExportRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Format == "" {
		req.Format = api.ImportOVA
	}
	if req.Version == "" {
		req.Version = "1.0"
	}
	if req.Format != api.ImportOVA && req.Format != api.ImportOVF {
		fail(w, api.Errorf(api.ErrInvalid, "export format must be ova or ovf, got %q", req.Format))
		return
	}
	if req.Version != "1.0" && req.Version != "2.0" {
		fail(w, api.Errorf(api.ErrInvalid, "OVF version must be 1.0 or 2.0, got %q", req.Version))
		return
	}
	vm, _, err := s.pathVM(r)
	if err == nil {
		err = inventory.CheckReady(vm)
	}
	if err == nil && vm.Status.PowerState != api.PowerOff {
		err = api.Errorf(api.ErrConflict, "vm %s is %s: export it while it is off (its disks must not change)", vm.Metadata.Name, vm.Status.PowerState)
	}
	if err == nil && vm.Spec.Boot != nil {
		err = kernelBootExport(s, vm)
	}
	var dsID string
	if err == nil {
		if len(vm.Spec.Disks) > 0 {
			dsID = vm.Spec.Disks[0].Datastore.ID
		} else {
			var o api.Object
			if o, err = s.inv.Pick(api.KindDatastore, "", func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared }); err == nil {
				dsID = o.GetMeta().ID
			}
		}
	}
	if err != nil {
		fail(w, err)
		return
	}
	p := exportParams{Format: req.Format, Version: req.Version, Staging: newStagingID(dsID), Datastore: dsID}
	t, err := s.submitter.Submit(r.Context(), s.store.Txn(), tasks.New(r.Context(), api.OpVMExport, vm, p))
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// kernelBootExport refuses to export a VM that boots a kernel image
// directly: a package holds its disks, so the VM would come out of any
// import (VMware's, VirtualBox's, vdc's) with nothing to boot from.
func kernelBootExport(s *Server, vm *api.VM) error {
	image := vm.Spec.Image.ID
	if o, ok := s.cache.Get(api.KindImage, image); ok {
		image = o.GetMeta().Name
	}
	return api.Errorf(api.ErrUnprocessable, "vm %s boots the kernel of image %s directly, not from a disk: an OVF package carries only its disks, "+
		"and the VM would not boot wherever it is imported; export a VM that boots from its disk (made with --image of a disk image)", vm.Metadata.Name, image)
}

func (s *Server) runVMExport(ctx context.Context, t *tasks.Run) (any, error) {
	var p exportParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	cctx, ccancel := t.CleanupCtx()
	defer ccancel()
	drop := func() {
		if _, h, err := s.stagingHost(p.Staging); err == nil {
			_ = s.agents.StagingDelete(cctx, hosts.TargetOf(h), p.Datastore, p.Staging)
		}
	}
	if t.Resumed {
		drop()
		return nil, fmt.Errorf("interrupted: the management server stopped during the export; its files were removed; export again")
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if vm.Status.PowerState != api.PowerOff {
		return nil, api.Errorf(api.ErrConflict, "vm %s is %s: export it while it is off", vm.Metadata.Name, vm.Status.PowerState)
	}
	ok := false
	defer func() {
		if !ok {
			drop()
		}
	}()
	var req agent.ExportRequest
	for i, d := range vm.Spec.Disks {
		req.Disks = append(req.Disks, agent.ExportDisk{Datastore: d.Datastore.ID, Path: d.Path, Name: fmt.Sprintf("%s-disk%d.vmdk", vm.Metadata.Name, i)})
	}
	t.Progress(ctx, 5, "writing the disks as streamOptimized VMDKs on host "+h.Metadata.Name)
	files, err := s.agents.StagingExport(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, req, func(f float64, msg string) {
		t.Progress(ctx, 5+int(f*85), msg)
	})
	if err != nil {
		return nil, fmt.Errorf("export vm %s: %w", vm.Metadata.Name, err)
	}
	ev := ovf.ExportVM{Name: vm.Metadata.Name, Description: vm.Spec.Description, CPUs: vm.Spec.CPUs, MemoryBytes: int64(vm.Spec.MemoryBytes)}
	for i, f := range files {
		ev.Disks = append(ev.Disks, ovf.ExportDisk{File: f.Name, FileSize: f.Size, CapacityBytes: f.VirtualBytes,
			PopulatedBytes: min(f.PopulatedBytes, f.VirtualBytes), Bus: vm.Spec.Disks[i].Bus})
	}
	for _, n := range vm.Spec.NICs {
		net := n.PortGroup.ID
		if o, ok := s.cache.Get(api.KindPortGroup, n.PortGroup.ID); ok {
			net = o.GetMeta().Name
		}
		ev.NICs = append(ev.NICs, ovf.ExportNIC{Network: net, Model: n.Model})
	}
	var desc bytes.Buffer
	if err := ovf.WriteDescriptor(&desc, ev, p.Version); err != nil {
		return nil, err
	}
	descName, mfName := vm.Metadata.Name+".ovf", vm.Metadata.Name+".mf"
	sums := map[string]string{descName: sha256Hex(desc.Bytes())}
	names := []string{descName}
	for _, f := range files {
		sums[f.Name] = f.SHA256
		names = append(names, f.Name)
	}
	var mf bytes.Buffer
	if err := ovf.WriteManifest(&mf, names, sums); err != nil {
		return nil, err
	}
	if _, err := s.agents.StagingExport(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, agent.ExportRequest{Files: map[string][]byte{
		descName: desc.Bytes(), mfName: mf.Bytes()}}, nil); err != nil {
		return nil, fmt.Errorf("export vm %s: %w", vm.Metadata.Name, err)
	}
	res := api.ExportResult{ID: p.Staging, Format: p.Format, Version: p.Version, Files: []api.UploadedFile{
		{Name: descName, Size: api.Size(desc.Len()), SHA256: sums[descName]},
		{Name: mfName, Size: api.Size(mf.Len()), SHA256: sha256Hex(mf.Bytes())},
	}}
	for _, f := range files {
		res.Files = append(res.Files, api.UploadedFile{Name: f.Name, Size: api.Size(f.Size), SHA256: f.SHA256})
	}
	ok = true
	return res, nil
}

// exportResult finds the finished export task of a staging folder.
func (s *Server) exportResult(id string) (*api.ExportResult, error) {
	var res *api.ExportResult
	s.cache.Each(api.KindTask, func(o api.Object) {
		t := o.(*api.Task)
		if t.Op != api.OpVMExport || t.State != api.TaskSucceeded || res != nil {
			return
		}
		var r api.ExportResult
		if jsonUnmarshal(t.Result, &r) == nil && r.ID == id {
			res = &r
		}
	})
	if res == nil {
		return nil, api.Errorf(api.ErrNotFound, "no finished export %q", id)
	}
	return res, nil
}

// GET /api/v1/exports/{id}/files?name=N streams one file of an export.
func (s *Server) downloadExportFile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	res, err := s.exportResult(r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	name := r.URL.Query().Get("name")
	var size api.Size = -1
	for _, f := range res.Files {
		if f.Name == name {
			size = f.Size
		}
	}
	if size < 0 {
		fail(w, api.Errorf(api.ErrNotFound, "export %s has no file %q", res.ID, name))
		return
	}
	ds, h, err := s.stagingHost(res.ID)
	if err != nil {
		fail(w, err)
		return
	}
	body, _, err := s.agents.StagingOpen(ctx, hosts.TargetOf(h), ds.Metadata.ID, res.ID, name)
	if err != nil {
		fail(w, err)
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(int64(size)))
	_, _ = io.CopyBuffer(w, body, make([]byte, 1<<20))
}

// GET /api/v1/exports/{id}/ova streams the export as one OVA: a tar of the
// descriptor, the manifest and the disks, in that order, made on the fly.
func (s *Server) downloadExportOVA(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	res, err := s.exportResult(r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	ds, h, err := s.stagingHost(res.ID)
	if err != nil {
		fail(w, err)
		return
	}
	var total int64 = 1024 // the tar's end
	for _, f := range res.Files {
		total += 512 + (int64(f.Size)+511)/512*512
	}
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Content-Length", fmt.Sprint(total))
	tw := ovf.NewOVAWriter(w)
	for _, f := range res.Files {
		body, _, err := s.agents.StagingOpen(ctx, hosts.TargetOf(h), ds.Metadata.ID, res.ID, f.Name)
		if err != nil {
			s.log.Warn("export download failed", "export", res.ID, "file", f.Name, "err", err)
			return // the client sees a short body
		}
		err = tw.Add(path.Base(f.Name), int64(f.Size), body)
		body.Close()
		if err != nil {
			return
		}
	}
	_ = tw.Close()
}

func sha256Hex(b []byte) string {
	h := ovf.NewHash("SHA256")
	h.Write(b)
	return fmt.Sprintf("%x", h.Sum(nil))
}

func jsonUnmarshal(b []byte, v any) error {
	if len(b) == 0 {
		return fmt.Errorf("empty")
	}
	return json.Unmarshal(b, v)
}
