package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// POST /api/v1/vms/{name}/clone
func (s *Server) cloneVM(w http.ResponseWriter, r *http.Request) {
	var req api.CloneRequest
	if !decode(w, r, &req) {
		return
	}
	s.cloneWith(w, r, req)
}

func (s *Server) cloneWith(w http.ResponseWriter, r *http.Request, req api.CloneRequest) {
	if err := storage.ValidateClone(req); err != nil {
		fail(w, err)
		return
	}
	src, _, err := s.pathVM(r)
	if err != nil {
		fail(w, err)
		return
	}
	t, err := s.storage.Clone(r.Context(), src, req)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// POST /api/v1/vms/{name}/mark-template: the VM becomes a template, only
// cloned from. POST .../unmark-template turns it back.
func (s *Server) markTemplate(on bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		op := storage.OpMarkTemplate
		if !on {
			op = storage.OpUnmarkTemplate
		}
		t, err := s.modify(r, api.KindVM, func(o api.Object) error { return s.storage.MarkTemplate(o.(*api.VM), on) },
			func(upd api.Object) *api.Task { return tasks.Done(tasks.New(r.Context(), op, upd, nil), nil) })
		if err != nil {
			fail(w, err)
			return
		}
		replyTask(w, t)
	}
}

// GET /api/v1/templates
func (s *Server) listTemplates(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	v := &viewer{s: s}
	var items []api.Object
	s.cache.Each(api.KindVM, func(o api.Object) {
		if o.(*api.VM).Spec.Template {
			items = append(items, v.view(o))
		}
	})
	inventory.SortByName(items)
	reply(w, http.StatusOK, api.List[api.Object]{Items: nonNil(items), Revision: s.cache.Rev()})
}

// createFromTemplate serves POST /api/v1/vms with fromTemplate: a clone of
// the template, under the request's name.
func (s *Server) createFromTemplate(w http.ResponseWriter, r *http.Request, req api.VMCreateRequest) {
	tmpl, body, err := s.storage.FromTemplate(r.Context(), req)
	if err != nil {
		fail(w, err)
		return
	}
	r.SetPathValue("name", tmpl.Metadata.ID)
	s.cloneWith(w, r, body)
}
