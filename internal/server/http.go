package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/vdc-project/vdc/api"
)

func (s *Server) getVersion(w http.ResponseWriter, r *http.Request) error {
	reply(w, http.StatusOK, s.version())
	return nil
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors, as is a body over 1 MiB, and so is a body that is not a JSON
// object (null, a list, a string...), which would otherwise pass as an
// empty request.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	br := bufio.NewReader(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := checkJSONKind(br, v); err != nil {
		return err
	}
	dec := json.NewDecoder(br)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badJSON(err)
	}
	if dec.More() {
		return api.Errorf(api.ErrInvalid, "request body has data after the JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return api.Errorf(api.ErrInvalid, "request body has data after the JSON object")
	}
	return nil
}

// checkJSONKind peeks at the first byte of a JSON body: an object for a
// struct or map, an array for a slice.
func checkJSONKind(br *bufio.Reader, v any) error {
	want, name := byte('{'), "object"
	if k := reflect.TypeOf(v).Elem().Kind(); k == reflect.Slice || k == reflect.Array {
		want, name = '[', "array"
	}
	for {
		b, err := br.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return api.Errorf(api.ErrInvalid, "request body is empty; send a JSON %s", name)
			}
			return badJSON(err)
		}
		switch b {
		case ' ', '\t', '\r', '\n':
			continue
		case want:
			return br.UnreadByte()
		case 'n':
			if rest, _ := br.Peek(3); string(rest) != "ull" {
				break
			}
			return api.Errorf(api.ErrInvalid, "request body is null; send a JSON %s", name)
		}
		return api.Errorf(api.ErrInvalid, "request body must be a JSON %s, not %s", name, jsonKindOf(b))
	}
}

func jsonKindOf(b byte) string {
	switch {
	case b == '{':
		return "an object"
	case b == '[':
		return "an array"
	case b == '"':
		return "a string"
	case b == 't' || b == 'f':
		return "a boolean"
	case b == '-' || b >= '0' && b <= '9':
		return "a number"
	}
	return fmt.Sprintf("%q (malformed JSON)", b)
}

// badJSON turns a decoding error into a message a user can act on.
func badJSON(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	var ae *api.Error
	switch {
	case errors.Is(err, io.EOF):
		return api.Errorf(api.ErrInvalid, "request body is empty; send a JSON object")
	case errors.As(err, &se):
		return api.Errorf(api.ErrInvalid, "malformed JSON at byte %d: %v", se.Offset, err)
	case errors.As(err, &te):
		return api.Errorf(api.ErrInvalid, "field %q must be a %s, not a JSON %s", te.Field, te.Type, te.Value)
	case errors.As(err, &mbe):
		return api.Errorf(api.ErrInvalid, "request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, api.ErrInvalid) || errors.As(err, &ae):
		return err
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return api.Errorf(api.ErrInvalid, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return api.Errorf(api.ErrInvalid, "malformed JSON: %v", err)
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// replyObject answers with one object and its generation as ETag.
func replyObject(w http.ResponseWriter, obj api.Object) {
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, obj.GetMeta().Generation))
	reply(w, http.StatusOK, obj)
}

// replyTask answers a state-changing call: 202 while the task runs, 200 if
// it is already done.
func replyTask(w http.ResponseWriter, t *api.Task) {
	w.Header().Set("Location", "/api/v1/tasks/"+t.Metadata.ID)
	status := http.StatusAccepted
	if api.TaskDone(t.State) {
		status = http.StatusOK
	}
	reply(w, status, t)
}

func fail(w http.ResponseWriter, err error) {
	e, status := api.ErrorFrom(err)
	reply(w, status, api.ErrorBody{Error: e})
}

// ifMatch returns the generation in an If-Match header, or 0.
func ifMatch(r *http.Request) (int64, error) {
	v := strings.Trim(strings.TrimPrefix(r.Header.Get("If-Match"), "W/"), `"`)
	if v == "" || v == "*" {
		return 0, nil
	}
	rev, err := strconv.ParseInt(v, 10, 64)
	if err != nil || rev <= 0 {
		return 0, api.Errorf(api.ErrInvalid, "If-Match must be a generation from an ETag, got %q", r.Header.Get("If-Match"))
	}
	return rev, nil
}

// checkIfMatch refuses a change when the client read an older generation.
func checkIfMatch(r *http.Request, obj api.Object) error {
	gen, err := ifMatch(r)
	if err != nil {
		return err
	}
	if m := obj.GetMeta(); gen != 0 && gen != m.Generation {
		return api.Errorf(api.ErrConflict, "%s %q is at generation %d, not %d: someone changed it since you read it",
			singular(obj.Kind()), m.Name, m.Generation, gen)
	}
	return nil
}

// queryBool reads ?name=true.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, api.Errorf(api.ErrInvalid, "query parameter %s must be true or false, got %q", name, v)
	}
	return b, nil
}
