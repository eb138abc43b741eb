// Package leader is the management servers' election: one server at a
// time leads (etcd's concurrency.Election under /vdc/sys/leader) and runs
// the tasks and controllers, every server answers the API. Txn starts a
// transaction fenced by this server's term, so a deposed leader can never
// overwrite its successor's work.
//
// leader depends on internal/store only.
package leader

import (
	"context"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/retry"
	"github.com/vdc-project/vdc/internal/store"
)

const electionPrefix = store.SysPrefix + "leader"

// Election is one server's part in the election.
type Election struct {
	st   *store.Store
	name string
	log  *slog.Logger

	mu   sync.Mutex
	term *term // nil unless this server leads
}

// term is this server's time as leader.
type term struct {
	key    string
	rev    int64
	cancel context.CancelFunc
	done   chan struct{}
	el     *concurrency.Election
}

// New prepares server name's part in the election over st.
func New(st *store.Store, name string, log *slog.Logger) *Election {
	return &Election{st: st, name: name, log: log}
}

// Campaign competes for leadership until ctx ends. Each time this server
// wins, lead runs the leader's duties with a context that ends with the
// term; once it ends, wait must return before the term is given up (the
// duties' goroutines have stopped).
func (e *Election) Campaign(ctx context.Context, lead func(ctx context.Context), wait func()) {
	for ctx.Err() == nil {
		var sess *concurrency.Session
		var el *concurrency.Election
		err := retry.Every(ctx, 0, time.Second, func() error {
			var err error
			if sess, err = concurrency.NewSession(e.st.Client(), concurrency.WithTTL(10), concurrency.WithContext(ctx)); err != nil {
				e.log.Warn("cannot open an election session; retrying", "err", err)
				return err
			}
			el = concurrency.NewElection(sess, electionPrefix)
			if err := el.Campaign(ctx, e.name); err != nil {
				sess.Close()
				if ctx.Err() == nil {
					e.log.Warn("election failed; retrying", "err", err)
				}
				return err
			}
			return nil
		})
		if err != nil {
			return // ctx ended
		}
		e.serve(ctx, sess, el, lead, wait)
	}
}

// serve holds one term: lead's duties run until the session ends or ctx.
func (e *Election) serve(ctx context.Context, sess *concurrency.Session, el *concurrency.Election, lead func(context.Context), wait func()) {
	lctx, cancel := context.WithCancel(ctx)
	t := &term{key: el.Key(), rev: el.Rev(), cancel: cancel, done: make(chan struct{}), el: el}
	e.mu.Lock()
	e.term = t
	e.mu.Unlock()
	e.log.Info("this server is now the leader")
	lead(lctx)
	select {
	case <-sess.Done():
		e.log.Warn("lost leadership (etcd session ended)")
	case <-lctx.Done():
	}
	cancel()
	wait()
	e.mu.Lock()
	e.term = nil
	e.mu.Unlock()
	close(t.done)
	sess.Close()
}

// Resigner returns what ends this server's present term, if it leads:
// the duties stop (the next leader resumes the tasks) and the election is
// resigned so another server takes over at once. Take it before ending
// Campaign's ctx, call it after.
func (e *Election) Resigner() func(ctx context.Context) {
	e.mu.Lock()
	t := e.term
	e.mu.Unlock()
	return func(ctx context.Context) {
		if t == nil {
			return
		}
		t.cancel()
		select {
		case <-t.done:
		case <-ctx.Done():
		}
		_ = t.el.Resign(ctx)
	}
}

// Txn starts a transaction that commits only while this server still
// leads.
func (e *Election) Txn() *store.Txn {
	e.mu.Lock()
	t := e.term
	e.mu.Unlock()
	notLeader := api.Errorf(api.ErrUnavailable, "server %s is no longer the leader", e.name)
	if t == nil {
		return e.st.Txn().If(clientv3.Compare(clientv3.Version(electionPrefix+"/none"), "<", 0), notLeader)
	}
	return e.st.Txn().If(clientv3.Compare(clientv3.CreateRevision(t.key), "=", t.rev), notLeader)
}

// IsLeader says whether this server leads now.
func (e *Election) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term != nil
}

// Leader names the server that leads, "" when none does.
func (e *Election) Leader(ctx context.Context) (string, error) {
	resp, err := e.st.Client().Get(ctx, electionPrefix+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	return string(resp.Kvs[0].Value), nil
}
