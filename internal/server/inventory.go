package server

import (
	"net/http"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

func (s *Server) listObjects(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.cache.Sync(r.Context()); err != nil {
			return err
		}
		var dcID string
		if dc := r.URL.Query().Get("datacenter"); dc != "" {
			d, err := s.inv.Lookup(api.KindDatacenter, dc)
			if err != nil {
				return err
			}
			dcID = d.GetMeta().ID
		}
		var items []api.Object
		for _, o := range s.cache.List(kind) {
			in := inventory.DatacenterOf(o)
			if kind == api.KindDatacenter {
				in = o.GetMeta().ID // ls --datacenter of datacenters: that one
			}
			if dcID != "" && in != dcID {
				continue
			}
			items = append(items, o)
		}
		items = readable(s, r, items)
		for i := range items {
			items[i] = s.views.View(items[i])
		}
		inventory.SortByName(items)
		if kind == api.KindFolder { // by path: each under its parent
			slices.SortStableFunc(items, func(a, b api.Object) int {
				return slices.Compare(strings.Split(a.(*api.Folder).Spec.Path, "/"), strings.Split(b.(*api.Folder).Spec.Path, "/"))
			})
		}
		reply(w, http.StatusOK, api.List[api.Object]{Items: nonNil(items), Revision: s.cache.Rev()})
		return nil
	}
}

func (s *Server) getObject(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.cache.Sync(r.Context()); err != nil {
			return err
		}
		o, err := s.inv.Lookup(kind, r.PathValue("name"))
		if err != nil {
			return err
		}
		replyObject(w, s.views.View(o))
		return nil
	}
}

func (s *Server) deleteObject(kind string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error { return s.remove(w, r, kind) }
}

// commitInline writes a change the request completes itself, with its
// (finished) task, and answers with the task.
func (s *Server) commitInline(w http.ResponseWriter, r *http.Request, txn *store.Txn, t *api.Task) error {
	t, err := s.submitter.Submit(r.Context(), txn, t)
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}

// createInline stores a new object with its finished task; the task's
// result is the object.
func (s *Server) createInline(w http.ResponseWriter, r *http.Request, obj api.Object) error {
	t := tasks.New(r.Context(), tasks.OpName(obj.Kind(), "create"), obj, nil)
	txn := s.store.Txn().Create(obj)
	tasks.Done(t, obj)
	return s.commitInline(w, r, txn, t)

}

func (s *Server) createDatacenter(w http.ResponseWriter, r *http.Request) error {
	var req api.DatacenterCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := inventory.ValidateCommon("datacenter", req.Name, req.Labels, req.Description); err != nil {
		return err
	}
	return s.createInline(w, r, &api.Datacenter{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec:     api.DatacenterSpec{Description: req.Description},
	})

}

func (s *Server) updateDatacenter(w http.ResponseWriter, r *http.Request) error {
	var req api.DatacenterUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return s.update(w, r, api.KindDatacenter, func(o api.Object) error {
		upd := o.(*api.Datacenter)
		return inventory.FirstErr(inventory.Rename("datacenter", &upd.Metadata, req.Name), inventory.Relabel(&upd.Metadata, req.Labels), inventory.Redescribe(&upd.Spec.Description, req.Description))
	})

}

func validateOvercommit(what string, v float64) error {
	if v < 0.1 || v > 100 {
		return api.Errorf(api.ErrInvalid, "%s overcommit ratio must be between 0.1 and 100, got %g", what, v)
	}
	return nil
}

func (s *Server) createCluster(w http.ResponseWriter, r *http.Request) error {
	var req api.ClusterCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.CPUOvercommit == 0 {
		req.CPUOvercommit = api.DefaultCPUOvercommit
	}
	if req.MemoryOvercommit == 0 {
		req.MemoryOvercommit = api.DefaultMemoryOvercommit
	}
	err := inventory.FirstErr(inventory.ValidateCommon("cluster", req.Name, req.Labels, req.Description),
		validateOvercommit("CPU", req.CPUOvercommit), validateOvercommit("memory", req.MemoryOvercommit),
		s.cache.Sync(r.Context()))
	if err != nil {
		return err
	}
	dc, err := s.inv.PickDatacenter(req.Datacenter)
	if err != nil {
		return err
	}
	var ha *api.ClusterHA
	if req.HA != nil {
		if ha, err = s.ha.ValidateHA(nil, req.HA); err != nil {
			return err
		}
	}
	return s.createInline(w, r, &api.Cluster{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec: api.ClusterSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, Description: req.Description,
			CPUOvercommit: req.CPUOvercommit, MemoryOvercommit: req.MemoryOvercommit, HA: ha},
	})

}

func (s *Server) updateCluster(w http.ResponseWriter, r *http.Request) error {
	var req api.ClusterUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return s.update(w, r, api.KindCluster, func(o api.Object) error {
		upd := o.(*api.Cluster)
		err := inventory.FirstErr(inventory.Rename("cluster", &upd.Metadata, req.Name), inventory.Relabel(&upd.Metadata, req.Labels), inventory.Redescribe(&upd.Spec.Description, req.Description))
		if err == nil && req.CPUOvercommit != nil {
			err = validateOvercommit("CPU", *req.CPUOvercommit)
			upd.Spec.CPUOvercommit = *req.CPUOvercommit
		}
		if err == nil && req.MemoryOvercommit != nil {
			err = validateOvercommit("memory", *req.MemoryOvercommit)
			upd.Spec.MemoryOvercommit = *req.MemoryOvercommit
		}
		if err == nil && req.HA != nil {
			upd.Spec.HA, err = s.ha.ValidateHA(upd.Spec.HA, req.HA)
		}
		return err
	})

}

func (s *Server) createDatastore(w http.ResponseWriter, r *http.Request) error {
	var req api.DatastoreCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	err := inventory.FirstErr(inventory.ValidateCommon("datastore", req.Name, req.Labels, req.Description), api.ValidateDatastorePath(req.Path), s.cache.Sync(r.Context()))
	if err != nil {
		return err
	}
	dc, err := s.inv.PickDatacenter(req.Datacenter)
	if err != nil {
		return err
	}
	ds := &api.Datastore{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec:     api.DatastoreSpec{Datacenter: api.Ref{ID: dc.Metadata.ID}, Path: req.Path, Shared: req.Host == "", Description: req.Description},
	}
	if req.Host != "" {
		h, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return err
		}
		ds.Spec.Host = api.Ref{ID: h.GetMeta().ID}
	}
	if err := s.inv.CheckDatastorePath(req.Path, ds.Spec.Host.ID); err != nil {
		return err
	}
	return s.createInline(w, r, ds)

}

func (s *Server) updateDatastore(w http.ResponseWriter, r *http.Request) error {
	var req api.DatastoreUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return s.update(w, r, api.KindDatastore, func(o api.Object) error {
		upd := o.(*api.Datastore)
		return inventory.FirstErr(inventory.Rename("datastore", &upd.Metadata, req.Name), inventory.Relabel(&upd.Metadata, req.Labels), inventory.Redescribe(&upd.Spec.Description, req.Description))
	})

}
