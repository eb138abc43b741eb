package transfer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/ovf"
)

type exportParams struct {
	Format    string `json:"format"`
	Version   string `json:"version"`
	Staging   string `json:"staging"`
	Datastore string `json:"datastore"`
}

// Export queues a vm.export task that writes the VM named (which must be
// off) as an OVF package (streamOptimized VMDKs, SHA-256 manifest) into a
// staging folder, to be downloaded from there.
func (s *Service) Export(ctx context.Context, vmName string, req api.ExportRequest) (*api.Task, error) {
	if req.Format == "" {
		req.Format = api.ImportOVA
	}
	if req.Version == "" {
		req.Version = "1.0"
	}
	if req.Format != api.ImportOVA && req.Format != api.ImportOVF {
		return nil, api.Errorf(api.ErrInvalid, "export format must be ova or ovf, got %q", req.Format)
	}
	if req.Version != "1.0" && req.Version != "2.0" {
		return nil, api.Errorf(api.ErrInvalid, "OVF version must be 1.0 or 2.0, got %q", req.Version)
	}
	vm, err := s.exportable(ctx, vmName)
	if err != nil {
		return nil, err
	}
	var dsID string
	if len(vm.Spec.Disks) > 0 {
		dsID = vm.Spec.Disks[0].Datastore.ID
	} else {
		o, err := s.inv.Pick(api.KindDatastore, "", func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
		if err != nil {
			return nil, err
		}
		dsID = o.GetMeta().ID
	}
	p := exportParams{Format: req.Format, Version: req.Version, Staging: newStagingID(dsID), Datastore: dsID}
	return s.tasks.Submit(ctx, s.st.Store.Txn(), tasks.New(ctx, api.OpVMExport, vm, p))
}

// exportable finds the VM named, on a connected host, ready and off, and
// booting from its disks.
func (s *Service) exportable(ctx context.Context, vmName string) (*api.VM, error) {
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, err
	}
	o, err := s.inv.Lookup(api.KindVM, vmName)
	if err != nil {
		return nil, err
	}
	vm := o.(*api.VM)
	if _, err := s.inv.VMHost(vm); err != nil {
		return nil, err
	}
	if err := inventory.CheckReady(vm); err != nil {
		return nil, err
	}
	if vm.Status.PowerState != api.PowerOff {
		return nil, api.Errorf(api.ErrConflict, "vm %s is %s: export it while it is off (its disks must not change)", vm.Metadata.Name, vm.Status.PowerState)
	}
	if vm.Spec.Boot != nil {
		return nil, s.kernelBootExport(vm)
	}
	return vm, nil
}

// kernelBootExport refuses to export a VM that boots a kernel image
// directly: a package holds its disks, so the VM would come out of any
// import (VMware's, VirtualBox's, vdc's) with nothing to boot from.
func (s *Service) kernelBootExport(vm *api.VM) error {
	image := vm.Spec.Image.ID
	if img, ok := state.Get[*api.Image](s.st, image); ok {
		image = img.Metadata.Name
	}
	return api.Errorf(api.ErrUnprocessable, "vm %s boots the kernel of image %s directly, not from a disk: an OVF package carries only its disks, "+
		"and the VM would not boot wherever it is imported; export a VM that boots from its disk (made with --image of a disk image)", vm.Metadata.Name, image)
}

// runVMExport has the VM's host write its disks as streamOptimized VMDKs
// into the staging folder, then the descriptor and the manifest. Whatever
// fails removes the folder.
func (s *Service) runVMExport(ctx context.Context, t *tasks.Run) (any, error) {
	var p exportParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	cctx, ccancel := t.CleanupCtx()
	defer ccancel()
	if t.Resumed {
		s.dropStaging(cctx, p.Staging, p.Datastore)
		return nil, fmt.Errorf("interrupted: the management server stopped during the export; its files were removed; export again")
	}
	vm, h, err := s.inv.LoadVM(ctx, t)
	if err != nil {
		return nil, err
	}
	if vm.Status.PowerState != api.PowerOff {
		return nil, api.Errorf(api.ErrConflict, "vm %s is %s: export it while it is off", vm.Metadata.Name, vm.Status.PowerState)
	}
	res, err := s.writeExport(ctx, t, p, vm, h)
	if err != nil {
		s.dropStaging(cctx, p.Staging, p.Datastore)
		return nil, err
	}
	return res, nil
}

// writeExport writes the package of vm on host h.
func (s *Service) writeExport(ctx context.Context, t *tasks.Run, p exportParams, vm *api.VM, h *api.Host) (*api.ExportResult, error) {
	var req agent.ExportRequest
	for i, d := range vm.Spec.Disks {
		req.Disks = append(req.Disks, agent.ExportDisk{Datastore: d.Datastore.ID, Path: d.Path, Name: fmt.Sprintf("%s-disk%d.vmdk", vm.Metadata.Name, i)})
	}
	t.Progress(ctx, 5, "writing the disks as streamOptimized VMDKs on host "+h.Metadata.Name)
	files, err := s.hosts.StagingExport(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, req, func(f float64, msg string) {
		t.Progress(ctx, 5+int(f*85), msg)
	})
	if err != nil {
		return nil, fmt.Errorf("export vm %s: %w", vm.Metadata.Name, err)
	}
	var desc bytes.Buffer
	if err := ovf.WriteDescriptor(&desc, s.exportVM(vm, files), p.Version); err != nil {
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
	if _, err := s.hosts.StagingExport(ctx, hosts.TargetOf(h), p.Datastore, p.Staging, agent.ExportRequest{Files: map[string][]byte{
		descName: desc.Bytes(), mfName: mf.Bytes()}}, nil); err != nil {
		return nil, fmt.Errorf("export vm %s: %w", vm.Metadata.Name, err)
	}
	res := &api.ExportResult{ID: p.Staging, Format: p.Format, Version: p.Version, Files: []api.UploadedFile{
		{Name: descName, Size: api.Size(desc.Len()), SHA256: sums[descName]},
		{Name: mfName, Size: api.Size(mf.Len()), SHA256: sha256Hex(mf.Bytes())},
	}}
	for _, f := range files {
		res.Files = append(res.Files, api.UploadedFile{Name: f.Name, Size: api.Size(f.Size), SHA256: f.SHA256})
	}
	return res, nil
}

// exportVM is what the descriptor says of vm, whose disks the host wrote
// as files.
func (s *Service) exportVM(vm *api.VM, files []agent.ExportedFile) ovf.ExportVM {
	ev := ovf.ExportVM{Name: vm.Metadata.Name, Description: vm.Spec.Description, CPUs: vm.Spec.CPUs, MemoryBytes: int64(vm.Spec.MemoryBytes)}
	for i, f := range files {
		ev.Disks = append(ev.Disks, ovf.ExportDisk{File: f.Name, FileSize: f.Size, CapacityBytes: f.VirtualBytes,
			PopulatedBytes: min(f.PopulatedBytes, f.VirtualBytes), Bus: vm.Spec.Disks[i].Bus})
	}
	for _, n := range vm.Spec.NICs {
		net := n.PortGroup.ID
		if pg, ok := state.Get[*api.PortGroup](s.st, n.PortGroup.ID); ok {
			net = pg.Metadata.Name
		}
		ev.NICs = append(ev.NICs, ovf.ExportNIC{Network: net, Model: n.Model})
	}
	return ev
}

// exportResult finds the finished export task of a staging folder.
func (s *Service) exportResult(id string) (*api.ExportResult, error) {
	var res *api.ExportResult
	state.Each(s.st, func(t *api.Task) {
		if t.Op != api.OpVMExport || t.State != api.TaskSucceeded || res != nil || len(t.Result) == 0 {
			return
		}
		var r api.ExportResult
		if json.Unmarshal(t.Result, &r) == nil && r.ID == id {
			res = &r
		}
	})
	if res == nil {
		return nil, api.Errorf(api.ErrNotFound, "no finished export %q", id)
	}
	return res, nil
}

// ExportFile opens file name of finished export id, and says its size.
func (s *Service) ExportFile(ctx context.Context, id, name string) (io.ReadCloser, api.Size, error) {
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, 0, err
	}
	res, err := s.exportResult(id)
	if err != nil {
		return nil, 0, err
	}
	var size api.Size = -1
	for _, f := range res.Files {
		if f.Name == name {
			size = f.Size
		}
	}
	if size < 0 {
		return nil, 0, api.Errorf(api.ErrNotFound, "export %s has no file %q", res.ID, name)
	}
	ds, h, err := s.stagingHost(res.ID)
	if err != nil {
		return nil, 0, err
	}
	body, _, err := s.hosts.StagingOpen(ctx, hosts.TargetOf(h), ds.Metadata.ID, res.ID, name)
	if err != nil {
		return nil, 0, err
	}
	return body, size, nil
}

// OVA is a finished export, to be sent as one OVA.
type OVA struct {
	s   *Service
	res *api.ExportResult
	ds  string
	h   *api.Host
}

// ExportOVA finds finished export id and a host to read it from.
func (s *Service) ExportOVA(ctx context.Context, id string) (*OVA, error) {
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, err
	}
	res, err := s.exportResult(id)
	if err != nil {
		return nil, err
	}
	ds, h, err := s.stagingHost(res.ID)
	if err != nil {
		return nil, err
	}
	return &OVA{s: s, res: res, ds: ds.Metadata.ID, h: h}, nil
}

// Size is the length of the OVA: a tar of the export's files.
func (o *OVA) Size() int64 {
	var total int64 = 1024 // the tar's end
	for _, f := range o.res.Files {
		total += 512 + (int64(f.Size)+511)/512*512
	}
	return total
}

// Send writes the OVA to w, made on the fly: the descriptor, the
// manifest and the disks, in that order. When a file cannot be read, w
// gets a short OVA.
func (o *OVA) Send(ctx context.Context, w io.Writer) {
	tw := ovf.NewOVAWriter(w)
	for _, f := range o.res.Files {
		body, _, err := o.s.hosts.StagingOpen(ctx, hosts.TargetOf(o.h), o.ds, o.res.ID, f.Name)
		if err != nil {
			o.s.log.Warn("export download failed", "export", o.res.ID, "file", f.Name, "err", err)
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
