package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/storage"
	"github.com/vdc-project/vdc/internal/store"
)

// eventLog turns store changes into events, keeps the recent ones so a
// client can resume with Last-Event-ID, and fans them out to streams.
type eventLog struct {
	mu      sync.Mutex
	ring    []api.Event // circular: the oldest at start
	start   int
	size    int
	lastRev int64
	idx     int64
	subs    map[chan api.Event]bool
}

func newEventLog(size int) *eventLog {
	return &eventLog{size: size, subs: map[chan api.Event]bool{}}
}

// events says what a change means to a user.
func events(ch store.Change) []api.Event {
	base := api.Event{Time: ch.Time.UTC(), Kind: ch.Kind, ID: ch.ID}
	if ch.Obj != nil {
		base.Name = ch.Obj.GetMeta().Name
	} else if ch.Prev != nil {
		base.Name = ch.Prev.GetMeta().Name
	}
	if t, ok := ch.Obj.(*api.Task); ok {
		e := base
		e.Type, e.Task, e.Name = api.EventTask, t, t.Target.Name
		e.Message = fmt.Sprintf("%s %s: %s", t.Op, t.Target.Name, t.State)
		if t.Error != nil {
			e.Message += ": " + t.Error.Message
		}
		return []api.Event{e}
	}
	if ch.Kind == api.KindTask {
		return nil
	}
	switch {
	case ch.Prev == nil:
		e := base
		e.Type = api.EventCreated
		e.Message = fmt.Sprintf("%s %s created", singular(ch.Kind), base.Name)
		return []api.Event{e}
	case ch.Obj == nil:
		e := base
		e.Type = api.EventDeleted
		e.Message = fmt.Sprintf("%s %s deleted", singular(ch.Kind), base.Name)
		return []api.Event{e}
	}
	switch o := ch.Obj.(type) {
	case *api.VM:
		p := ch.Prev.(*api.VM)
		if p.Status.PowerState != o.Status.PowerState && p.Status.PowerState != "" {
			e := base
			e.Type, e.From, e.To = api.EventVMPower, p.Status.PowerState, o.Status.PowerState
			e.Message = fmt.Sprintf("vm %s: %s → %s", o.Metadata.Name, e.From, e.To)
			if o.Status.Message != "" {
				e.Message += " (" + o.Status.Message + ")"
			}
			return []api.Event{e}
		}
	case *api.Datastore:
		return storage.DatastoreEvents(base, ch.Prev.(*api.Datastore), o)
	case *api.Host:
		p := ch.Prev.(*api.Host)
		var out []api.Event
		if p.Status.Connection != o.Status.Connection {
			e := base
			e.Type, e.From, e.To = api.EventHostConnection, p.Status.Connection, o.Status.Connection
			e.Message = fmt.Sprintf("host %s %s", o.Metadata.Name, o.Status.Connection)
			out = append(out, e)
		}
		if p.Status.FailedAt.IsZero() != o.Status.FailedAt.IsZero() {
			e := base
			e.Type, e.From, e.To = api.EventHostHA, "ok", "failed"
			e.Message = fmt.Sprintf("host %s failed: HA restarts its protected VMs on the other hosts", o.Metadata.Name)
			if o.Status.FailedAt.IsZero() {
				e.From, e.To = "failed", "ok"
				e.Message = fmt.Sprintf("host %s, declared failed at %s, is back", o.Metadata.Name, p.Status.FailedAt.Format(time.RFC3339))
			}
			out = append(out, e)
		}
		return out
	}
	return nil
}

// observe is the cache subscriber.
func (l *eventLog) observe(ch store.Change) {
	evs := events(ch)
	if len(evs) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range evs {
		// Seq: the revision, with room for the several changes of one transaction.
		if ch.Rev != l.lastRev {
			l.lastRev, l.idx = ch.Rev, 0
		}
		e.Seq = ch.Rev<<10 | l.idx
		l.idx++
		if len(l.ring) < l.size {
			l.ring = append(l.ring, e)
		} else {
			l.ring[l.start] = e
			l.start = (l.start + 1) % l.size
		}
		for sub := range l.subs {
			select {
			case sub <- e:
			default: // too slow: drop the stream; the client resumes from its last ID
				delete(l.subs, sub)
				close(sub)
			}
		}
	}
}

// subscribe returns the kept events after seq and a channel of new ones.
func (l *eventLog) subscribe(after int64) ([]api.Event, chan api.Event, func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var backlog []api.Event
	if after > 0 {
		for i := range l.ring {
			if e := l.ring[(l.start+i)%len(l.ring)]; e.Seq > after {
				backlog = append(backlog, e)
			}
		}
	}
	ch := make(chan api.Event, 1024)
	l.subs[ch] = true
	return backlog, ch, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.subs[ch] {
			delete(l.subs, ch)
			close(ch)
		}
	}
}

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
	keep := func(e api.Event) bool {
		return (len(types) == 0 || types[e.Type]) && (kind == "" || e.Kind == kind || e.Task != nil && e.Task.Target.Kind == kind) &&
			(id == "" || e.ID == id || e.Task != nil && e.Task.Target.ID == id)
	}
	backlog, ch, cancel := s.events.subscribe(after)
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
