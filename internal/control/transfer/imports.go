package transfer

import (
	"context"
	"fmt"
	"net/url"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// importParams are kept in a vm.import task.
type importParams struct {
	Req api.ImportRequest `json:"req"`
	// The staging folder the package is in (an upload), or is fetched to.
	Staging   string `json:"staging"`
	Datastore string `json:"datastore"`
	// Disk is the name of the disk a disk import adds to a VM, claimed
	// with the task.
	Disk string `json:"disk,omitempty"`
}

func validateImport(req *api.ImportRequest) error {
	switch req.Format {
	case api.ImportOVA, api.ImportOVF, api.ImportFormatDisk:
	default:
		return api.Errorf(api.ErrInvalid, "import format must be ova, ovf or disk, got %q", req.Format)
	}
	if err := validateImportSource(req); err != nil {
		return err
	}
	if req.Name != "" {
		if err := api.ValidateName("vm", req.Name); err != nil {
			return err
		}
	}
	if err := inventory.ValidateLabels(req.Labels); err != nil {
		return err
	}
	switch req.Bus {
	case "", api.BusVirtio, api.BusSCSI, api.BusSATA:
	default:
		return api.Errorf(api.ErrInvalid, "bus must be virtio, scsi or sata, got %q", req.Bus)
	}
	if req.Format == api.ImportFormatDisk {
		if req.VM == "" && req.Name == "" {
			return api.Errorf(api.ErrInvalid, "a disk import needs the VM to attach it to, or a name for a new VM")
		}
		if req.CPUs != 0 || req.Memory != 0 {
			if err := inventory.ValidateVMShape(max(req.CPUs, 1), max(req.Memory, api.Size(1<<30))); err != nil {
				return err
			}
		}
	} else if req.VM != "" || req.CPUs != 0 || req.Memory != 0 || req.File != "" {
		return api.Errorf(api.ErrInvalid, "vm, cpus, memory and file apply to disk imports only")
	}
	return validateImportText(req)
}

// validateImportSource checks that an import has one source: an upload,
// a URL, or (a dry run) the descriptor.
func validateImportSource(req *api.ImportRequest) error {
	sources := 0
	for _, v := range []string{req.Upload, req.URL} {
		if v != "" {
			sources++
		}
	}
	if sources > 1 || (sources == 0 && !(req.DryRun && req.Descriptor != "")) {
		return api.Errorf(api.ErrInvalid, "give one source: an upload, or a URL (or, for a dry run, the descriptor)")
	}
	if req.Descriptor != "" && req.Format == api.ImportFormatDisk {
		return api.Errorf(api.ErrInvalid, "a disk import has no descriptor")
	}
	if err := api.ValidateText("url", req.URL); err != nil {
		return err
	}
	if req.URL != "" {
		u, err := url.Parse(req.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return api.Errorf(api.ErrInvalid, "url must be an http or https URL, got %q", req.URL)
		}
	}
	if req.Upload != "" && !stagingIDRE.MatchString(req.Upload) {
		return api.Errorf(api.ErrNotFound, "no upload %q", req.Upload)
	}
	return nil
}

// validateImportText checks the properties, network mappings and
// deployment option a request gives.
func validateImportText(req *api.ImportRequest) error {
	for k, v := range req.Properties {
		if len(k) > 256 || len(v) > 64<<10 {
			return api.Errorf(api.ErrInvalid, "property %q is too long", truncate(k, 40))
		}
		// A value may span lines (a certificate); a key is one word.
		if err := inventory.FirstErr(api.ValidateText("property key", k), api.ValidateMultilineText(fmt.Sprintf("property %q value", k), v)); err != nil {
			return err
		}
	}
	for src, pg := range req.Networks {
		if err := inventory.FirstErr(api.ValidateText("network", src), api.ValidateText(fmt.Sprintf("port group of network %q", src), pg)); err != nil {
			return err
		}
	}
	return api.ValidateText("deployment", req.Deployment)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Import plans an import. A dry run answers with the plan (and no task);
// an import queues a vm.import task. A package that is already uploaded
// is checked here, so that a bad one is refused at once, and nothing is
// made.
func (s *Service) Import(ctx context.Context, req api.ImportRequest) (*api.Task, *api.ImportPlan, error) {
	if err := validateImport(&req); err != nil {
		return nil, nil, err
	}
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, nil, err
	}
	p := importParams{Req: req}
	if req.Upload != "" {
		ds, _, err := s.stagingHost(req.Upload)
		if err != nil {
			return nil, nil, err
		}
		p.Staging, p.Datastore = req.Upload, ds.Metadata.ID
	} else {
		ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared || req.Datastore != "" })
		if err != nil {
			return nil, nil, fmt.Errorf("import: %w", err)
		}
		p.Staging, p.Datastore = newStagingID(ds.GetMeta().ID), ds.GetMeta().ID
	}
	var planned *importPlan
	if req.DryRun || req.Upload != "" {
		plan, err := s.planImport(ctx, &p, req.DryRun)
		if err != nil {
			return nil, nil, fmt.Errorf("import: %w", err)
		}
		if req.DryRun {
			return nil, &plan.api, nil
		}
		if err := s.checkNames(plan, nil); err != nil {
			return nil, nil, err
		}
		planned = plan
	}
	p.Req.Descriptor = ""
	t, err := s.submitImport(ctx, p, planned)
	return t, nil, err
}

// submitImport queues the vm.import task. What the import makes later is
// claimed with its task, where it is known now: the name of the disk it
// adds to a VM, or of the VMs it makes (all of them from an upload; the
// one of a disk).
func (s *Service) submitImport(ctx context.Context, p importParams, planned *importPlan) (*api.Task, error) {
	req := p.Req
	name := req.Name
	if name == "" {
		name = req.VM
	}
	if name == "" && planned != nil && len(planned.vms) > 0 {
		name = planned.vms[0].req.Name
	}
	placeholder := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}}
	var attach *api.VM
	if planned != nil {
		attach = planned.attach
	} else if vm, ok := state.Lookup[*api.VM](s.st, req.VM); ok && req.Format == api.ImportFormatDisk && req.VM != "" {
		attach = vm
	}
	if attach != nil {
		return s.inv.SubmitOnVM(ctx, attach, func(vm *api.VM) (*api.Task, error) {
			if err := s.attachReady(vm, ""); err != nil {
				return nil, err
			}
			p.Disk = s.disks.NextDiskName(vm)
			t := tasks.New(ctx, api.OpVMImport, placeholder, p)
			s.disks.ClaimDiskName(t, vm, p.Disk)
			return t, nil
		})
	}
	t := tasks.New(ctx, api.OpVMImport, placeholder, p)
	var names []string
	if planned != nil {
		for _, pv := range planned.vms {
			names = append(names, pv.req.Name)
		}
	} else if req.Format == api.ImportFormatDisk {
		names = []string{name}
	}
	txn := s.st.Store.Txn()
	for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
		if err := s.inv.VMNameFree(n, nil); err != nil {
			return nil, err
		}
		txn.ClaimName(api.KindVM, n, t.Metadata.ID)
		t.Claims = append(t.Claims, store.NameClaim(api.KindVM, n))
	}
	return s.tasks.Submit(ctx, txn, t)
}

// checkNames refuses an import whose VMs' names are taken; self is the
// import's task, which holds its claims on them.
func (s *Service) checkNames(plan *importPlan, self *api.Task) error {
	if plan.attach != nil {
		return nil
	}
	for _, vm := range plan.vms {
		if err := s.inv.VMNameFree(vm.req.Name, self); err != nil {
			return fmt.Errorf("%w; import under another name (--name)", err)
		}
	}
	return nil
}

// attachReady checks that a disk import can add a disk to a VM; own is
// the disk name the import claimed, if it did.
func (s *Service) attachReady(vm *api.VM, own string) error {
	if err := inventory.CheckReady(vm); err != nil {
		return err
	}
	if vm.Status.PowerState != api.PowerOff {
		return api.Errorf(api.ErrConflict, "vm %s is %s: add disks while it is off", vm.Metadata.Name, vm.Status.PowerState)
	}
	pending := s.inv.PendingClaims(inventory.VMClaim(vm.Metadata.ID, "disks", ""))
	delete(pending, inventory.VMClaim(vm.Metadata.ID, "disks", own))
	if n := len(vm.Spec.Disks) + len(pending); n >= api.MaxDisksPerVM {
		return api.Errorf(api.ErrConflict, "vm %s has %d disks already (some being added), the most a VM can have", vm.Metadata.Name, n)
	}
	return nil
}
