// Package audit is the audit trail: who did (or tried) what, from where,
// when, on what, with which result and task. Records are written to etcd
// under sys/audit/ID (IDs are UUIDv7: time-ordered), in batches, each on
// an etcd lease that expires them after the retention time (one lease per
// hour of records). A request carries a Pending record in its context,
// which the layers it passes through fill in (the user once its token is
// checked, the object and privilege once its route is, the task once it
// is submitted).
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

const prefix = store.SysPrefix + "audit/"

// DefaultRetention is how long records are kept unless configured.
const DefaultRetention = 90 * 24 * time.Hour

// Log writes and reads the audit trail.
type Log struct {
	cli       *clientv3.Client
	log       *slog.Logger
	retention time.Duration
	ch        chan api.AuditRecord

	mu       sync.Mutex
	lease    clientv3.LeaseID
	leaseEnd time.Time // when a new lease is taken for new records
}

// New returns a log over st keeping records for retention (0: the
// default).
func New(st *store.Store, retention time.Duration, log *slog.Logger) *Log {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Log{cli: st.Client(), log: log, retention: retention, ch: make(chan api.AuditRecord, 4096)}
}

// Record queues r for writing; it blocks only when the queue is full
// (etcd slower than requests), so that nothing is dropped.
func (l *Log) Record(r api.AuditRecord) {
	if r.ID == "" {
		r.ID = store.NewID()
	}
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	l.ch <- r
}

// Run writes queued records until ctx ends, in batches of what queued
// while the last one was written.
func (l *Log) Run(ctx context.Context) {
	for {
		var batch []api.AuditRecord
		select {
		case <-ctx.Done():
			l.drain()
			return
		case r := <-l.ch:
			batch = append(batch, r)
		}
		for more := true; more && len(batch) < 128; {
			select {
			case r := <-l.ch:
				batch = append(batch, r)
			default:
				more = false
			}
		}
		l.write(ctx, batch)
	}
}

// drain writes what is queued when the server stops.
func (l *Log) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		select {
		case r := <-l.ch:
			l.write(ctx, []api.AuditRecord{r})
		default:
			return
		}
	}
}

func (l *Log) write(ctx context.Context, batch []api.AuditRecord) {
	lease, err := l.leaseFor(ctx)
	if err == nil {
		ops := make([]clientv3.Op, len(batch))
		for i, r := range batch {
			b, _ := json.Marshal(r)
			ops[i] = clientv3.OpPut(prefix+r.ID, string(b), clientv3.WithLease(lease))
		}
		_, err = l.cli.Txn(ctx).Then(ops...).Commit()
	}
	if err != nil {
		l.log.Error("cannot write audit records", "records", len(batch), "err", err)
	}
}

// leaseFor is the lease of records written now: a new one each hour,
// living the retention time plus that hour.
func (l *Log) leaseFor(ctx context.Context) (clientv3.LeaseID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease != 0 && time.Now().Before(l.leaseEnd) {
		return l.lease, nil
	}
	g, err := l.cli.Grant(ctx, int64((l.retention + time.Hour).Seconds()))
	if err != nil {
		return 0, fmt.Errorf("grant the audit records' lease: %w", err)
	}
	l.lease, l.leaseEnd = g.ID, time.Now().Add(time.Hour)
	return l.lease, nil
}

// Query selects records.
type Query struct {
	User, Object, Result string
	Since                time.Time
	Limit                int // 0: 1000
}

// List returns the records q selects, newest first.
func (l *Log) List(ctx context.Context, q Query) ([]api.AuditRecord, error) {
	from := prefix
	if !q.Since.IsZero() {
		ms := q.Since.UnixMilli()
		from = prefix + fmt.Sprintf("%08x-%04x", ms>>16, ms&0xffff)
	}
	resp, err := l.cli.Get(ctx, from, clientv3.WithRange(clientv3.GetPrefixRangeEnd(prefix)))
	if err != nil {
		return nil, fmt.Errorf("read the audit trail: %w", err)
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 1000
	}
	var out []api.AuditRecord
	for i := len(resp.Kvs) - 1; i >= 0 && len(out) < limit; i-- {
		var r api.AuditRecord
		if json.Unmarshal(resp.Kvs[i].Value, &r) != nil {
			continue
		}
		if (q.User == "" || r.User == q.User) && (q.Object == "" || r.Object == q.Object) && (q.Result == "" || r.Result == q.Result) &&
			!r.Time.Before(q.Since) {
			out = append(out, r)
		}
	}
	return out, nil
}

// Pending is the record of a request being served, filled in as it goes.
type Pending struct {
	mu sync.Mutex
	r  api.AuditRecord
}

type pendingKey struct{}

// Start begins the record of a request in ctx.
func Start(ctx context.Context, from, action string) (context.Context, *Pending) {
	p := &Pending{r: api.AuditRecord{From: from, Action: action}}
	return context.WithValue(ctx, pendingKey{}, p), p
}

func pending(ctx context.Context) *Pending {
	p, _ := ctx.Value(pendingKey{}).(*Pending)
	return p
}

// SetUser notes who the request acts as.
func SetUser(ctx context.Context, user string) {
	if p := pending(ctx); p != nil {
		p.mu.Lock()
		p.r.User = user
		p.mu.Unlock()
	}
}

// SetCall notes the request's route and the privilege it needs.
func SetCall(ctx context.Context, action, privilege string) {
	if p := pending(ctx); p != nil {
		p.mu.Lock()
		p.r.Action, p.r.Privilege = action, privilege
		p.mu.Unlock()
	}
}

// SetObject notes what the request acts on (KIND:NAME) and the
// privilege checked there.
func SetObject(ctx context.Context, object, privilege string) {
	if p := pending(ctx); p != nil {
		p.mu.Lock()
		p.r.Object, p.r.Privilege = object, privilege
		p.mu.Unlock()
	}
}

// SetTask notes the task the request submitted (the first one).
func SetTask(ctx context.Context, id string) {
	if p := pending(ctx); p != nil {
		p.mu.Lock()
		if p.r.Task == "" {
			p.r.Task = id
		}
		p.mu.Unlock()
	}
}

// Finish is the record of the request that ended with status (and, for
// an error, its message).
func (p *Pending) Finish(status int, message string) api.AuditRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.r
	r.Status, r.Message = status, message
	switch {
	case status < 400:
		r.Result = api.AuditOK
	case slices.Contains([]int{401, 403, 429}, status) || status == 404 && r.Object != "":
		r.Result = api.AuditRefused
	default:
		r.Result = api.AuditFailed
	}
	if len(r.Message) > 512 {
		r.Message = r.Message[:512]
	}
	r.Message = strings.ToValidUTF8(r.Message, "?")
	return r
}
