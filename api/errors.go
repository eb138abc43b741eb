package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Error classes. Wrap them with %w; the server turns them into an HTTP status
// in one place and the client turns the status back, so errors.Is works on
// both sides of the wire.
var (
	ErrInvalid         = errors.New("invalid")           // 400
	ErrUnauthorized    = errors.New("unauthorized")      // 401
	ErrForbidden       = errors.New("forbidden")         // 403
	ErrNotFound        = errors.New("not found")         // 404
	ErrConflict        = errors.New("conflict")          // 409: exists, wrong state, stale revision
	ErrUnprocessable   = errors.New("unprocessable")     // 422: valid request that cannot be satisfied (no room)
	ErrTooManyRequests = errors.New("too many requests") // 429: slow down (failed logins)
	ErrNotSupported    = errors.New("not supported")     // 501
	ErrUnavailable     = errors.New("unavailable")       // 503: host disconnected, no leader
)

// Error codes as they appear on the wire.
const (
	CodeInvalid         = "invalid"
	CodeUnauthorized    = "unauthorized"
	CodeForbidden       = "forbidden"
	CodeNotFound        = "not_found"
	CodeConflict        = "conflict"
	CodeUnprocessable   = "unprocessable"
	CodeTooManyRequests = "too_many_requests"
	CodeNotSupported    = "not_supported"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
)

var classes = []struct {
	err    error
	code   string
	status int
}{
	{ErrInvalid, CodeInvalid, http.StatusBadRequest},
	{ErrUnauthorized, CodeUnauthorized, http.StatusUnauthorized},
	{ErrForbidden, CodeForbidden, http.StatusForbidden},
	{ErrNotFound, CodeNotFound, http.StatusNotFound},
	{ErrConflict, CodeConflict, http.StatusConflict},
	{ErrUnprocessable, CodeUnprocessable, http.StatusUnprocessableEntity},
	{ErrTooManyRequests, CodeTooManyRequests, http.StatusTooManyRequests},
	{ErrNotSupported, CodeNotSupported, http.StatusNotImplemented},
	{ErrUnavailable, CodeUnavailable, http.StatusServiceUnavailable},
}

// Error is the body of every failed API call: {"error": {...}}, and the
// error recorded in a failed task.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Status is the HTTP status it came with (client side only).
	Status int `json:"-"`
}

// ErrorBody wraps Error on the wire.
type ErrorBody struct {
	Error *Error `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Is lets errors.Is(err, api.ErrNotFound) work on errors that came over the wire.
func (e *Error) Is(target error) bool {
	for _, c := range classes {
		if c.err == target {
			return c.code == e.Code
		}
	}
	return false
}

// ErrorFrom classifies any error into a wire Error and its HTTP status.
func ErrorFrom(err error) (*Error, int) {
	var ae *Error
	if errors.As(err, &ae) {
		st := ae.Status
		if st == 0 {
			st = StatusOf(ae.Code)
		}
		return &Error{Code: ae.Code, Message: err.Error()}, st
	}
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return &Error{Code: c.code, Message: err.Error()}, c.status
		}
	}
	return &Error{Code: CodeInternal, Message: err.Error()}, http.StatusInternalServerError
}

// StatusOf maps a wire code to its HTTP status.
func StatusOf(code string) int {
	for _, c := range classes {
		if c.code == code {
			return c.status
		}
	}
	return http.StatusInternalServerError
}

// CodeOfStatus maps an HTTP status to a wire code (for bodies that carry none).
func CodeOfStatus(status int) string {
	for _, c := range classes {
		if c.status == status {
			return c.code
		}
	}
	return CodeInternal
}

// Errorf builds an error of a class whose message is only the formatted text:
// api.Errorf(api.ErrInvalid, "cpus must be at least 1, got %d", n).
// Wrap it further with fmt.Errorf("...: %w", err) as usual.
func Errorf(class error, format string, args ...any) error {
	return &classErr{msg: fmt.Sprintf(format, args...), class: class}
}

type classErr struct {
	msg   string
	class error
}

func (c *classErr) Error() string { return c.msg }
func (c *classErr) Unwrap() error { return c.class }
