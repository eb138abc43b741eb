package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/audit"
)

// audited says which requests go in the audit trail: every one that may
// change something (but hosts' heartbeats and renewals), every console
// and export read, and, found once answered, every refused one.
func audited(r *http.Request) bool {
	p := r.URL.Path
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return strings.HasSuffix(p, "/console") || strings.HasSuffix(p, "/vnc") || strings.HasSuffix(p, "/console/log") ||
			strings.HasPrefix(p, "/api/v1/exports/")
	}
	return p != "/api/v1/agent/heartbeat" && p != "/api/v1/agent/renew"
}

// auditRequests records requests in the audit trail (see audited) once
// they are answered.
func (s *Server) auditRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		from, _, _ := net.SplitHostPort(r.RemoteAddr)
		ctx, p := audit.Start(r.Context(), from, r.Method+" "+r.URL.Path)
		aw := &auditWriter{ResponseWriter: w}
		next.ServeHTTP(aw, r.WithContext(ctx))
		status := aw.status
		if status == 0 {
			status = http.StatusOK
		}
		if !audited(r) && status != http.StatusUnauthorized && status != http.StatusForbidden && status != http.StatusTooManyRequests {
			return
		}
		var body api.ErrorBody
		if status >= 400 && json.Unmarshal(aw.errBody, &body) == nil && body.Error != nil {
			s.audit.Record(p.Finish(status, body.Error.Message))
			return
		}
		s.audit.Record(p.Finish(status, ""))
	})
}

// auditWriter notes a response's status and the start of an error's
// body; it lets websockets and event streams through.
type auditWriter struct {
	http.ResponseWriter
	status  int
	errBody []byte
}

func (w *auditWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.errBody) < 2048 {
		w.errBody = append(w.errBody, b[:min(len(b), 2048-len(w.errBody))]...)
	}
	return w.ResponseWriter.Write(b)
}

func (w *auditWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *auditWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be taken over")
	}
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return h.Hijack()
}

func (w *auditWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// GET /api/v1/audit
func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	aq := audit.Query{User: q.Get("user"), Object: q.Get("object"), Result: q.Get("result")}
	if v := q.Get("since"); v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			aq.Since = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, v); err == nil {
			aq.Since = t
		} else {
			return api.Errorf(api.ErrInvalid, "since must be a duration back from now (1h) or a time (RFC 3339), got %q", v)
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 100000 {
			return api.Errorf(api.ErrInvalid, "limit must be 1 to 100000, got %q", v)
		}
		aq.Limit = n
	}
	items, err := s.audit.List(r.Context(), aq)
	if err != nil {
		return err
	}
	reply(w, http.StatusOK, api.List[api.AuditRecord]{Items: nonNil(items)})
	return nil
}
