package storage

import (
	"context"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
)

// The ops of the (instant) tasks that record a VM made a template, or
// turned back.
const (
	OpMarkTemplate   = "vm.mark-template"
	OpUnmarkTemplate = "vm.unmark-template"
)

// MarkTemplate makes vm (a copy to be written) a template, only cloned
// from, or (on false) turns it back into a VM, which no linked clone may
// depend on.
func (s *Service) MarkTemplate(vm *api.VM, on bool) error {
	if err := inventory.CheckReady(vm); err != nil {
		return err
	}
	switch {
	case vm.Spec.Template == on:
		return api.Errorf(api.ErrConflict, "vm %s is %s a template", vm.Metadata.Name, map[bool]string{true: "already", false: "not"}[on])
	case on && vm.Status.PowerState != api.PowerOff:
		return api.Errorf(api.ErrConflict, "vm %s is %s: power it off to make it a template", vm.Metadata.Name, vm.Status.PowerState)
	case on && slices.ContainsFunc(vm.Spec.Snapshots, func(sn api.VMSnapshot) bool { return !sn.Hidden }):
		return api.Errorf(api.ErrConflict, "vm %s has snapshots: delete them to make it a template", vm.Metadata.Name)
	case !on:
		if deps := s.VMDependents(vm); len(deps) > 0 {
			return api.Errorf(api.ErrConflict, "linked clones depend on template %s: %v", vm.Metadata.Name, inventory.FirstN(deps, 10))
		}
	}
	vm.Spec.Template = on
	return nil
}

// FromTemplate turns a create request that names a template into the
// clone of the template it amounts to (under the request's name): it
// returns the template and the clone request.
func (s *Service) FromTemplate(ctx context.Context, req api.VMCreateRequest) (*api.VM, api.CloneRequest, error) {
	switch {
	case len(req.Disks) > 0 || req.Image != "" || req.CDROM != "" || req.NICs != nil:
		return nil, api.CloneRequest{}, api.Errorf(api.ErrInvalid, "a VM made from a template takes its disks, image and NICs from it: drop disks, image, cdrom and nics")
	case req.Cluster != "":
		return nil, api.CloneRequest{}, api.Errorf(api.ErrInvalid, "a VM made from a template goes in the template's cluster (or the host's): drop cluster")
	}
	if err := s.st.Cache.Sync(ctx); err != nil {
		return nil, api.CloneRequest{}, err
	}
	o, err := s.inv.Lookup(api.KindVM, req.FromTemplate)
	if err == nil && !o.(*api.VM).Spec.Template {
		err = api.Errorf(api.ErrInvalid, "vm %s is not a template (vdc vm mark-template %s)", req.FromTemplate, req.FromTemplate)
	}
	if err != nil {
		return nil, api.CloneRequest{}, err
	}
	body := api.CloneRequest{Name: req.Name, Linked: req.Linked, Host: req.Host, CPUs: req.CPUs, Memory: req.Memory, PowerOn: req.PowerOn,
		CloudInit: req.CloudInit, Labels: req.Labels, Description: req.Description, Folder: req.Folder}
	return o.(*api.VM), body, nil
}
