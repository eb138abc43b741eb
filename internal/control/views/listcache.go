package views

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// ListCache keeps the JSON of each object's view, so that listing ten
// thousand VMs costs copying bytes, not encoding them again. An entry is
// good while the object's revision and the tally's names epoch stand.
type ListCache struct {
	v  *Viewer
	mu sync.Mutex
	m  map[string]encodedView
}

type encodedView struct {
	rev   int64
	epoch uint64
	b     []byte
}

// NewListCache returns an empty cache of v's views.
func NewListCache(v *Viewer) *ListCache {
	return &ListCache{v: v, m: map[string]encodedView{}}
}

// Observe forgets deleted objects (a store.Cache observer).
func (l *ListCache) Observe(ch store.Change) {
	if ch.Obj == nil {
		l.mu.Lock()
		delete(l.m, ch.Kind+"/"+ch.ID)
		l.mu.Unlock()
	}
}

// Write writes {"items":[...],"revision":N} for objs, encoding only the
// views that changed.
func (l *ListCache) Write(buf *bytes.Buffer, objs []api.Object, rev int64) {
	epoch := l.v.tally.Epoch()
	buf.WriteString(`{"items":[`)
	for i, o := range objs {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(l.encoded(o, epoch))
	}
	buf.WriteString(`],"revision":`)
	buf.WriteString(strconv.FormatInt(rev, 10))
	buf.WriteString("}\n")
}

// encoded returns o's view as JSON, from the cache while it is good.
func (l *ListCache) encoded(o api.Object, epoch uint64) []byte {
	m := o.GetMeta()
	key := o.Kind() + "/" + m.ID
	l.mu.Lock()
	e, ok := l.m[key]
	l.mu.Unlock()
	if !ok || e.rev != m.Revision || e.epoch != epoch {
		b, err := json.Marshal(l.v.View(o))
		if err != nil {
			panic("encode " + key + ": " + err.Error())
		}
		e = encodedView{rev: m.Revision, epoch: epoch, b: b}
		l.mu.Lock()
		l.m[key] = e
		l.mu.Unlock()
	}
	return e.b
}
