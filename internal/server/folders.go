package server

import (
	"net/http"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

// VM folders: the calls name a folder ({name}) by its ID, its path
// (URL-escaped: /api/v1/folders/%2Fweb%2Fprod; "dc1:/web/prod" to say
// which datacenter), or its name when only one folder has it (see
// inventory.Folder).

// POST /api/v1/folders: the folder at a path whose parent exists; with
// parents, the missing folders on the way too, in one transaction.
func (s *Server) createFolder(w http.ResponseWriter, r *http.Request) error {
	var req api.FolderCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	names, err := api.SplitFolderPath(req.Path)
	if err == nil && len(names) == 0 {
		err = api.Errorf(api.ErrInvalid, "give the new folder's path, like /web: / is the datacenter's top level")
	}
	err = inventory.FirstErr(err, inventory.ValidateLabels(req.Labels), inventory.ValidateDescription(req.Description), s.cache.Sync(r.Context()))
	if err != nil {
		return err
	}
	dc, err := s.inv.PickDatacenter(req.Datacenter)
	if err != nil {
		return err
	}
	dcID := dc.Metadata.ID
	txn := s.store.Txn()
	var parent string // the folder's ID, "" for the top level
	var leaf *api.Folder
	for i, n := range names {
		at := "/" + strings.Join(names[:i+1], "/")
		if f, ok := s.inv.FolderIn(dcID, parent, n); ok {
			if i == len(names)-1 {
				return api.Errorf(api.ErrConflict, "folder %s already exists in datacenter %s", at, dc.Metadata.Name)
			}
			parent = f.Metadata.ID
			continue
		}
		if i < len(names)-1 && !req.Parents {
			return api.Errorf(api.ErrNotFound, "folder %s not found in datacenter %s: create it first, or ask for the parents too (vdc folder create --parents)", at, dc.Metadata.Name)
		}
		if leaf == nil {
			s.inv.KeepFolder(txn, parent) // the first one made goes in a folder that stays
		}
		leaf = &api.Folder{Metadata: api.ObjectMeta{ID: store.NewID(), Name: n},
			Spec: api.FolderSpec{Datacenter: api.Ref{ID: dcID}, Parent: api.Ref{ID: parent}}}
		if i == len(names)-1 { // the labels and description are the new folder's
			leaf.Metadata.Labels, leaf.Spec.Description = req.Labels, req.Description
		}
		txn.Create(leaf)
		parent = leaf.Metadata.ID
	}
	t := tasks.New(r.Context(), tasks.OpName(api.KindFolder, "create"), leaf, nil)
	tasks.Done(t, leaf)
	return s.commitInline(w, r, txn, t)
}

// PATCH /api/v1/folders/{name}: rename (under the same parent), relabel,
// describe.
func (s *Server) updateFolder(w http.ResponseWriter, r *http.Request) error {
	var req api.FolderUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return s.update(w, r, api.KindFolder, func(o api.Object) error {
		upd := o.(*api.Folder)
		err := inventory.FirstErr(inventory.Rename("folder", &upd.Metadata, req.Name), inventory.Relabel(&upd.Metadata, req.Labels), inventory.Redescribe(&upd.Spec.Description, req.Description))
		if err != nil || req.Name == nil {
			return err
		}
		if f, ok := s.inv.FolderIn(upd.Spec.Datacenter.ID, upd.Spec.Parent.ID, *req.Name); ok && f.Metadata.ID != upd.Metadata.ID {
			return api.Errorf(api.ErrConflict, "folder %s already has a folder named %s", inventory.FolderPath(s.st, upd.Spec.Parent.ID), *req.Name)
		}
		return nil
	})
}

// POST /api/v1/vms/{name}/move: put a VM in another folder of its
// datacenter, or at its top level ("/"). The caller needs
// VirtualMachine.Inventory.Move on the VM (the route's) and, as vSphere
// asks, on where it goes: the folder, or the datacenter for the top.
func (s *Server) moveVM(w http.ResponseWriter, r *http.Request) error {
	var req api.VMMoveRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Folder == "" {
		return api.Errorf(api.ErrInvalid, "give the folder to move the vm to (a path like /web, or / for the top level)")
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	o, err := s.inv.Lookup(api.KindVM, r.PathValue("name"))
	if err != nil {
		return err
	}
	vm := o.(*api.VM)
	dcID := s.inv.VMDatacenter(vm)
	dest, err := s.inv.FolderDest(req.Folder, dcID)
	if err != nil {
		return err
	}
	ref, to := inventory.FolderRef(dest), api.ObjectRef{Kind: api.KindDatacenter, ID: dcID}
	if dest != nil {
		to = api.ObjectRef{Kind: api.KindFolder, ID: dest.Metadata.ID}
	}
	if err := s.authorizeOn(r, authz.VMMove, to); err != nil {
		return err
	}
	path := inventory.FolderPath(s.st, ref.ID)
	t, err := s.modifyGuarded(r, api.KindVM, func(o api.Object) error {
		upd := o.(*api.VM)
		if err := inventory.CheckReady(upd); err != nil {
			return err
		}
		if upd.Spec.Folder.ID == ref.ID {
			return api.Errorf(api.ErrConflict, "vm %s is already in %s", upd.Metadata.Name, path)
		}
		upd.Spec.Folder = ref
		return nil
	}, func(upd api.Object) *api.Task {
		t := tasks.New(r.Context(), api.OpVMMove, upd, req)
		t.Message = "vm " + upd.GetMeta().Name + " moved to " + path
		return tasks.Done(t, upd)
	}, func(txn *store.Txn) { s.inv.KeepFolder(txn, ref.ID) })
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
