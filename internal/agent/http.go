package agent

import (
	"fmt"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent/agenthttp"
	"github.com/vdc-project/vdc/internal/agent/staging"
	"github.com/vdc-project/vdc/internal/agent/vmnics"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/netguard"
)

// The agent's API, called only by management servers (mutual TLS).
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/v1/vms", func(w http.ResponseWriter, r *http.Request) {
		states, _ := a.vms.States(r.Context(), true)
		agenthttp.Reply(w, http.StatusOK, states)
	})
	mux.HandleFunc("PUT /agent/v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		var cfg hypervisor.VMConfig
		if !agenthttp.Decode(w, r, &cfg) {
			return
		}
		if cfg.ID != r.PathValue("id") {
			agenthttp.Fail(w, api.Errorf(api.ErrInvalid, "VM config ID %q does not match the path", cfg.ID))
			return
		}
		if err := a.checkVMFiles(cfg); err != nil {
			agenthttp.Fail(w, fmt.Errorf("define vm %s: %w", cfg.Name, err))
			return
		}
		a.plugNICs(&cfg)
		st, err := a.vms.Define(r.Context(), cfg)
		if err != nil {
			agenthttp.Fail(w, err)
			return
		}
		agenthttp.Reply(w, http.StatusOK, st)
	})
	mux.HandleFunc("DELETE /agent/v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := a.vms.Undefine(r.Context(), r.PathValue("id"), r.URL.Query().Get("force") == "true"); err != nil {
			agenthttp.Fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /agent/v1/vms/{id}/power", func(w http.ResponseWriter, r *http.Request) {
		var req api.PowerRequest
		if !agenthttp.Decode(w, r, &req) {
			return
		}
		st, err := a.vms.Power(r.Context(), r.PathValue("id"), req)
		if err != nil {
			agenthttp.Fail(w, err)
			return
		}
		agenthttp.Reply(w, http.StatusOK, st)
	})
	a.guestRoutes(mux)
	a.migrationRoutes(mux)
	(&staging.Area{Resolve: a.datastorePath, BeforeConvert: a.cfg.BeforeConvert}).Routes(mux)
	a.storageRoutes(mux)
	a.hardwareRoutes(mux)
	nics := &vmnics.Routes{VMs: a.vms, Driver: a.cfg.Driver, Plug: a.plugNICs, Log: a.log}
	if a.net != nil {
		nics.Net = a.net
	}
	nics.Register(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !peerIsServer(r) {
			agenthttp.Fail(w, api.Errorf(api.ErrForbidden, "only a management server may call the agent API"))
			return
		}
		netguard.Trust(r.Context()) // off the per-address limit
		mux.ServeHTTP(w, r)
	})
}
