package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/tasks"
)

// POST /api/v1/hosts/{name}/maintenance {"action": "enter"|"exit"}. Enter
// keeps new VMs off the host at once, then a task moves its VMs away:
// running ones live, powered-off ones by registration.
func (s *Server) hostMaintenance(w http.ResponseWriter, r *http.Request) error {
	var req api.MaintenanceRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if req.Action != api.MaintenanceEnter && req.Action != api.MaintenanceExit {
		return api.Errorf(api.ErrInvalid, "maintenance action must be enter or exit, got %q", req.Action)
	}
	evacuate := false
	t, err := s.modify(r, api.KindHost, func(o api.Object) (err error) {
		evacuate, err = s.maintenance.Change(o.(*api.Host), req.Action == api.MaintenanceEnter)
		return err
	}, func(upd api.Object) *api.Task {
		t := tasks.New(r.Context(), "host.maintenance."+req.Action, upd, req)
		if !evacuate {
			tasks.Done(t, nil)
		}
		return t
	})
	if err != nil {
		return err
	}
	replyTask(w, t)
	return nil
}
