package server

import (
	"net/http"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/pki"
)

// GET /api/v1/hosts?cluster=
func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	var clusterID string
	if c := r.URL.Query().Get("cluster"); c != "" {
		o, err := s.inv.Lookup(api.KindCluster, c)
		if err != nil {
			return err
		}
		clusterID = o.GetMeta().ID
	}
	var items []api.Object
	s.cache.Each(api.KindHost, func(o api.Object) {
		if clusterID == "" || o.(*api.Host).Spec.Cluster.ID == clusterID {
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

func (s *Server) updateHost(w http.ResponseWriter, r *http.Request) error {
	var req api.HostUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	return s.update(w, r, api.KindHost, func(o api.Object) error {
		upd := o.(*api.Host)
		if err := inventory.FirstErr(inventory.Rename("host", &upd.Metadata, req.Name), inventory.Relabel(&upd.Metadata, req.Labels)); err != nil || req.Cluster == nil {
			return err
		}
		cl, err := s.inv.Lookup(api.KindCluster, *req.Cluster)
		if err != nil || cl.GetMeta().ID == upd.Spec.Cluster.ID {
			return err
		}
		if n := len(s.tally.VMsOn(upd.Metadata.ID)); n > 0 {
			return api.Errorf(api.ErrConflict, "cannot move host %q to cluster %q: it has %d VMs", upd.Metadata.Name, cl.GetMeta().Name, n)
		}
		upd.Spec.Cluster = api.Ref{ID: cl.GetMeta().ID}
		return nil
	})

}

// POST /api/v1/agent/heartbeat
func (s *Server) agentHeartbeat(w http.ResponseWriter, r *http.Request) error {
	h, cert, err := s.hostOfRequest(r)
	if err != nil {
		return err
	}
	var hb api.Heartbeat
	if err := decode(w, r, &hb); err != nil {
		return err
	}
	serial := pki.Serial(cert)
	resp, err := s.liveness.Heartbeat(r.Context(), h, &hb, func(h *api.Host) error {
		// Revoked (a host replace) since the check above: not one more beat.
		if matchCert(h, serial) == certRefused {
			return errCertRefused(h, serial)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A certificate that outlives the server's policy (one from before
	// certificates were short-lived) is renewed at once.
	resp.RenewCertificate = cert.NotAfter.After(time.Now().Add(s.cfg.HostCertTTL + time.Minute))
	reply(w, http.StatusOK, resp)
	return nil
}
