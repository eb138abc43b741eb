package events

import (
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// subBuffer is how many events a subscriber may fall behind before it is
// dropped.
const subBuffer = 1024

// Log turns store changes into events, keeps the recent ones so a client
// can resume with Last-Event-ID, and fans them out to subscribers.
type Log struct {
	mu      sync.Mutex
	ring    []api.Event // circular: the oldest at start
	start   int
	size    int
	lastRev int64
	idx     int64
	subs    map[chan api.Event]bool
}

// NewLog returns a log that keeps the last size events.
func NewLog(size int) *Log {
	return &Log{size: size, subs: map[chan api.Event]bool{}}
}

// Observe is the cache subscriber (store.Cache.Subscribe): it records the
// change's events and sends them to the subscribers. It never blocks: a
// subscriber whose buffer is full is dropped, its channel closed, and its
// client resumes from the last ID it saw.
func (l *Log) Observe(ch store.Change) {
	evs := Of(ch)
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

// Subscribe returns the kept events after seq after (none when after is
// 0), a channel of the new ones, closed if the subscriber falls too far
// behind, and the func that ends the subscription.
func (l *Log) Subscribe(after int64) ([]api.Event, <-chan api.Event, func()) {
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
	ch := make(chan api.Event, subBuffer)
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
