package server

import (
	"bytes"
	"encoding/json"
	"strconv"
	"sync"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// listCache keeps the JSON of each object's view, so that listing ten
// thousand VMs costs copying bytes, not encoding them again. An entry is
// good while the object's revision and the tally's names epoch stand.
type listCache struct {
	mu sync.Mutex
	m  map[string]encodedView
}

type encodedView struct {
	rev   int64
	epoch uint64
	b     []byte
}

func newListCache() *listCache { return &listCache{m: map[string]encodedView{}} }

// observe forgets deleted objects (a cache observer).
func (l *listCache) observe(ch store.Change) {
	if ch.Obj == nil {
		l.mu.Lock()
		delete(l.m, ch.Kind+"/"+ch.ID)
		l.mu.Unlock()
	}
}

// writeList writes {"items":[...],"revision":N} for objs, encoding only
// the views that changed.
func (s *Server) writeList(buf *bytes.Buffer, objs []api.Object, rev int64) {
	epoch := s.tally.Epoch()
	v := &viewer{s: s}
	buf.WriteString(`{"items":[`)
	for i, o := range objs {
		if i > 0 {
			buf.WriteByte(',')
		}
		m := o.GetMeta()
		key := o.Kind() + "/" + m.ID
		s.lists.mu.Lock()
		e, ok := s.lists.m[key]
		s.lists.mu.Unlock()
		if !ok || e.rev != m.Revision || e.epoch != epoch {
			b, err := json.Marshal(v.view(o))
			if err != nil {
				panic("encode " + key + ": " + err.Error())
			}
			e = encodedView{rev: m.Revision, epoch: epoch, b: b}
			s.lists.mu.Lock()
			s.lists.m[key] = e
			s.lists.mu.Unlock()
		}
		buf.Write(e.b)
	}
	buf.WriteString(`],"revision":`)
	buf.WriteString(strconv.FormatInt(rev, 10))
	buf.WriteString("}\n")
}
