package server

import (
	"bytes"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/authz"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/vms"
)

// GET /api/v1/vms?host=&cluster=&power=&folder=
func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	q := r.URL.Query()
	var hostID, clusterID string
	for param, id := range map[string]*string{"host": &hostID, "cluster": &clusterID} {
		if v := q.Get(param); v != "" {
			kind := api.KindHost
			if param == "cluster" {
				kind = api.KindCluster
			}
			o, err := s.inv.Lookup(kind, v)
			if err != nil {
				return err
			}
			*id = o.GetMeta().ID
		}
	}
	power, inFolder := q.Get("power"), q.Has("folder")
	folder, err := s.inv.FolderDest(q.Get("folder"), "")
	if err != nil {
		return err
	}
	folderID := inventory.FolderRef(folder).ID
	items := make([]api.Object, 0, s.cache.Count(api.KindVM))
	s.cache.Each(api.KindVM, func(o api.Object) {
		vm := o.(*api.VM)
		if (hostID == "" || vm.Spec.Host.ID == hostID) && (clusterID == "" || vm.Spec.Cluster.ID == clusterID) &&
			(power == "" || vm.Status.PowerState == power) && (!inFolder || vm.Spec.Folder.ID == folderID) {
			items = append(items, o)
		}
	})
	items = readable(s, r, items)
	inventory.SortByName(items)
	var buf bytes.Buffer
	s.lists.Write(&buf, items, s.cache.Rev())
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(buf.Bytes())
	return nil
}

// POST /api/v1/vms
func (s *Server) createVM(w http.ResponseWriter, r *http.Request) error {
	var req api.VMCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.FromTemplate != "" {
		// A clone: its destination's rights are checked on the root until
		// the clone path plans it as a create does (admitVM).
		if err := s.authorizeOn(r, authz.VMCreate, api.ObjectRef{Kind: authz.Root.Kind}); err != nil {
			return err
		}
		return s.createFromTemplate(w, r, req)
	}
	t, err := s.vms.Create(r.Context(), &req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// PATCH /api/v1/vms/{name}: rename, relabel, describe, VNC; CPUs and
// memory while the VM is off, or growing while it runs (hot-add: a
// vm.hot-add task, in the same transaction as the rest). The host gets
// a definition changed while off at the next start.
func (s *Server) updateVM(w http.ResponseWriter, r *http.Request) error {
	var req api.VMUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	var plan *vms.Update
	t, err := s.modify(r, api.KindVM, func(o api.Object) (err error) {
		plan, err = s.vms.PlanUpdate(o.(*api.VM), &req)
		return err
	}, func(upd api.Object) *api.Task { return plan.Task(r.Context(), upd) })
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// DELETE /api/v1/vms/{name}?force=true
func (s *Server) deleteVM(w http.ResponseWriter, r *http.Request) error {
	force, err := queryBool(r, "force")
	if err != nil {
		return err
	}
	t, err := s.modify(r, api.KindVM, func(o api.Object) error {
		return s.vms.PlanDelete(o.(*api.VM), force)
	}, func(upd api.Object) *api.Task {
		return s.vms.DeleteTask(r.Context(), upd, force)
	})
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// POST /api/v1/vms/{name}/power
func (s *Server) powerVM(w http.ResponseWriter, r *http.Request) error {
	var req api.PowerRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := vms.CheckPowerRequest(req); err != nil {
		return err
	}
	vm, h, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.vms.Power(r.Context(), vm, h, req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
