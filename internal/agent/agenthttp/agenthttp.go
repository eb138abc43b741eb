// Package agenthttp holds what the host agent's HTTP handlers share: request
// bodies decoded strictly, JSON replies, and driver errors answered with
// the API's error classes. It calls no other part of the agent.
package agenthttp

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/lease"
)

// Decode reads a request's JSON body into v (an object, or an array when
// v points to a slice), refusing unknown fields; on a bad body it answers
// the request itself and returns false.
func Decode(w http.ResponseWriter, r *http.Request, v any) bool {
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
			Fail(w, api.Errorf(api.ErrInvalid, "bad request body: want a JSON %s", name))
			return false
		}
		_ = br.UnreadByte()
		break
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		Fail(w, api.Errorf(api.ErrInvalid, "bad request body: %v", err))
		return false
	}
	return true
}

// Reply answers v as JSON with status.
func Reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Fail answers an error, driver errors mapped to the API's classes.
func Fail(w http.ResponseWriter, err error) {
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
	Reply(w, status, api.ErrorBody{Error: e})
}

// WithClass gives an error an API class (api.ErrInvalid, ...) while
// keeping its message.
func WithClass(err, class error) error { return &wrapped{err, class} }

// wrapped gives a driver error an API class while keeping its message.
type wrapped struct{ err, class error }

func (w *wrapped) Error() string { return w.err.Error() }

func (w *wrapped) Unwrap() []error { return []error{w.err, w.class} }
