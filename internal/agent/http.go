package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/lease"
	"github.com/vdc-project/vdc/internal/netguard"
)

// The agent's API, called only by management servers (mutual TLS).
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /agent/v1/vms", func(w http.ResponseWriter, r *http.Request) {
		states, _ := a.vms.states(r.Context(), true)
		reply(w, http.StatusOK, states)
	})
	mux.HandleFunc("PUT /agent/v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		var cfg hypervisor.VMConfig
		if !decodeBody(w, r, &cfg) {
			return
		}
		if cfg.ID != r.PathValue("id") {
			fail(w, api.Errorf(api.ErrInvalid, "VM config ID %q does not match the path", cfg.ID))
			return
		}
		if err := a.checkVMFiles(cfg); err != nil {
			fail(w, fmt.Errorf("define vm %s: %w", cfg.Name, err))
			return
		}
		st, err := a.vms.define(r.Context(), cfg)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, st)
	})
	mux.HandleFunc("DELETE /agent/v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		if err := a.vms.undefine(r.Context(), r.PathValue("id"), r.URL.Query().Get("force") == "true"); err != nil {
			fail(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /agent/v1/vms/{id}/power", func(w http.ResponseWriter, r *http.Request) {
		var req api.PowerRequest
		if !decodeBody(w, r, &req) {
			return
		}
		st, err := a.vms.power(r.Context(), r.PathValue("id"), req)
		if err != nil {
			fail(w, err)
			return
		}
		reply(w, http.StatusOK, st)
	})
	a.guestRoutes(mux)
	a.migrationRoutes(mux)
	a.stagingRoutes(mux)
	a.storageRoutes(mux)
	a.hardwareRoutes(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !peerIsServer(r) {
			fail(w, api.Errorf(api.ErrForbidden, "only a management server may call the agent API"))
			return
		}
		netguard.Trust(r.Context()) // off the per-address limit
		mux.ServeHTTP(w, r)
	})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	br := bufio.NewReader(io.LimitReader(r.Body, 4<<20))
	// null would decode as an empty request; a JSON of the wrong kind
	// would fail with a message about Go types.
	want, name := byte('{'), "object"
	if k := reflect.TypeOf(v).Elem().Kind(); k == reflect.Slice {
		want, name = '[', "array"
	}
	for {
		b, err := br.ReadByte()
		if err == nil && (b == ' ' || b == '\t' || b == '\r' || b == '\n') {
			continue
		}
		if err != nil || b != want {
			fail(w, api.Errorf(api.ErrInvalid, "bad request body: want a JSON %s", name))
			return false
		}
		_ = br.UnreadByte()
		break
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		fail(w, api.Errorf(api.ErrInvalid, "bad request body: %v", err))
		return false
	}
	return true
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// fail maps driver errors to the API's classes.
func fail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, hypervisor.ErrNotFound):
		err = &wrapped{err, api.ErrNotFound}
	case errors.Is(err, hypervisor.ErrWrongState):
		err = &wrapped{err, api.ErrConflict}
	case errors.Is(err, lease.ErrHeld):
		// Another copy of the VM runs: a conflict with the world, not a
		// fault of the host.
		err = &wrapped{err, api.ErrConflict}
	case errors.Is(err, hypervisor.ErrNotSupported):
		err = &wrapped{err, api.ErrNotSupported}
	case errors.Is(err, hypervisor.ErrGuestAgent):
		err = &wrapped{err, api.ErrUnavailable}
	case errors.Is(err, hypervisor.ErrInvalid):
		err = &wrapped{err, api.ErrInvalid}
	case errors.Is(err, hypervisor.ErrNoSpace):
		err = &wrapped{err, api.ErrUnprocessable}
	}
	e, status := api.ErrorFrom(err)
	reply(w, status, api.ErrorBody{Error: e})
}

// wrapped gives a driver error an API class while keeping its message.
type wrapped struct{ err, class error }

func (w *wrapped) Error() string   { return w.err.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.err, w.class} }
