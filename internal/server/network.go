package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

func (s *Server) createSwitch(w http.ResponseWriter, r *http.Request) error {
	var req api.SwitchCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	defer s.network.Lock()()
	sw, err := s.network.NewSwitch(req)
	if err != nil {
		return err
	}
	return s.createInline(w, r, sw)
}

func (s *Server) updateSwitch(w http.ResponseWriter, r *http.Request) error {
	var req api.SwitchUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	defer s.network.Lock()()
	return s.update(w, r, api.KindSwitch, func(o api.Object) error { return s.network.UpdateSwitch(o.(*api.Switch), req) })
}

func (s *Server) createPortGroup(w http.ResponseWriter, r *http.Request) error {
	var req api.PortGroupCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	defer s.network.Lock()()
	pg, err := s.network.NewPortGroup(req)
	if err != nil {
		return err
	}
	return s.createInline(w, r, pg)
}

func (s *Server) updatePortGroup(w http.ResponseWriter, r *http.Request) error {
	var req api.PortGroupUpdateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	defer s.network.Lock()()
	return s.update(w, r, api.KindPortGroup, func(o api.Object) error { return s.network.UpdatePortGroup(o.(*api.PortGroup), req) })
}
