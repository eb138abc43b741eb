package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// POST /api/v1/vms/{name}/clone
func (s *Server) cloneVM(w http.ResponseWriter, r *http.Request) error {
	var req api.CloneRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return s.cloneWith(w, r, req)

}

func (s *Server) cloneWith(w http.ResponseWriter, r *http.Request, req api.CloneRequest) error {
	if err := storage.ValidateClone(req); err != nil {
		return err
	}
	src, _, err := s.pathVM(r)
	if err != nil {
		return err
	}
	t, err := s.storage.Clone(r.Context(), src, req)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// POST /api/v1/vms/{name}/mark-template: the VM becomes a template, only
// cloned from. POST .../unmark-template turns it back.
func (s *Server) markTemplate(on bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		op := storage.OpMarkTemplate
		if !on {
			op = storage.OpUnmarkTemplate
		}
		t, err := s.modify(r, api.KindVM, func(o api.Object) error { return s.storage.MarkTemplate(o.(*api.VM), on) },
			func(upd api.Object) *api.Task { return tasks.Done(tasks.New(r.Context(), op, upd, nil), nil) })
		if err != nil {
			return err
		}
		replyTask(w, t)
		return nil
	}
}

// GET /api/v1/templates
func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	var items []api.Object
	s.cache.Each(api.KindVM, func(o api.Object) {
		if o.(*api.VM).Spec.Template {
			items = append(items, o)
		}
	})
	items = readable(s, r, items)
	for i := range items {
		items[i] = s.views.View(items[i])
	}
	inventory.SortByName(items)
	reply(w, http.StatusOK, api.List[api.Object]{Items: nonNil(items), Revision: s.cache.Rev()})
	return nil
}

// createFromTemplate serves POST /api/v1/vms with fromTemplate: a clone of
// the template, under the request's name.
func (s *Server) createFromTemplate(w http.ResponseWriter, r *http.Request, req api.VMCreateRequest) error {
	tmpl, body, err := s.storage.FromTemplate(r.Context(), req)
	if err != nil {
		return err
	}
	r.SetPathValue("name", tmpl.Metadata.ID)
	return s.cloneWith(w, r, body)

}
