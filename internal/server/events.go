package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vdc-project/vdc/api"
)

// GET /api/v1/events?types=task,vm.power&kind=vms&id=ID (SSE). Resume with
// the Last-Event-ID header or ?after=SEQ.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) error {
	flusher, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("streaming not supported")
	}
	q := r.URL.Query()
	var after int64
	for _, v := range []string{r.Header.Get("Last-Event-ID"), q.Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return api.Errorf(api.ErrInvalid, "event ID must be a sequence number, got %q", v)
		}
		after = n
	}
	types := map[string]bool{}
	for _, t := range strings.Split(q.Get("types"), ",") {
		if t != "" {
			types[t] = true
		}
	}
	kind, id := q.Get("kind"), q.Get("id")
	visible := s.eventVisible(r)
	keep := func(e api.Event) bool {
		return (len(types) == 0 || types[e.Type]) && (kind == "" || e.Kind == kind || e.Task != nil && e.Task.Target.Kind == kind) &&
			(id == "" || e.ID == id || e.Task != nil && e.Task.Target.ID == id) && visible(e)
	}
	backlog, ch, cancel := s.events.Subscribe(after)
	defer cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(e api.Event) error {
		b, _ := json.Marshal(e)
		_, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Seq, e.Type, b)
		return err
	}
	for _, e := range backlog {
		if keep(e) {
			if send(e) != nil {
				return nil
			}
		}
	}
	flusher.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case e, ok := <-ch:
			if !ok {
				return nil
			}
			if keep(e) {
				if send(e) != nil {
					return nil
				}
				flusher.Flush()
			}
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			flusher.Flush()
		}
	}
}
