package server

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
	"github.com/vdc-project/vdc/internal/version"
)

const electionPrefix = store.SysPrefix + "leader"

// leadership is this server's term as leader.
type leadership struct {
	key    string
	rev    int64
	cancel context.CancelFunc
	done   chan struct{}
	el     *concurrency.Election
}

// stop ends the term: tasks stop (the next leader resumes them) and the
// election is resigned so another server takes over at once.
func (l *leadership) stop(ctx context.Context) {
	l.cancel()
	select {
	case <-l.done:
	case <-ctx.Done():
	}
	_ = l.el.Resign(ctx)
}

// campaign competes for leadership for as long as the server runs, and
// runs the leader's duties while it holds it.
func (s *Server) campaign(ctx context.Context) {
	for ctx.Err() == nil {
		sess, err := concurrency.NewSession(s.cli, concurrency.WithTTL(10), concurrency.WithContext(ctx))
		if err != nil {
			s.log.Warn("cannot open an election session; retrying", "err", err)
			sleep(ctx, time.Second)
			continue
		}
		el := concurrency.NewElection(sess, electionPrefix)
		if err := el.Campaign(ctx, s.name); err != nil {
			sess.Close()
			if ctx.Err() == nil {
				s.log.Warn("election failed; retrying", "err", err)
				sleep(ctx, time.Second)
			}
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		l := &leadership{key: el.Key(), rev: el.Rev(), cancel: cancel, done: make(chan struct{}), el: el}
		s.leaderMu.Lock()
		s.leader = l
		s.leaderMu.Unlock()
		s.log.Info("this server is now the leader")
		s.lead(lctx)
		select {
		case <-sess.Done():
			s.log.Warn("lost leadership (etcd session ended)")
		case <-lctx.Done():
		}
		cancel()
		s.runner.Wait()
		s.leaderMu.Lock()
		s.leader = nil
		s.leaderMu.Unlock()
		close(l.done)
		sess.Close()
	}
}

// lead starts the leader's duties; they stop when ctx ends.
func (s *Server) lead(ctx context.Context) {
	s.runner.Start(ctx)
	go s.liveness.Monitor(ctx)
	go s.ha.MonitorGuests(ctx)
	go s.collectTasks(ctx)
}

// leaderTxn starts a transaction that commits only while this server still
// leads, so a deposed leader can never overwrite its successor's work.
func (s *Server) leaderTxn() *store.Txn {
	s.leaderMu.Lock()
	l := s.leader
	s.leaderMu.Unlock()
	notLeader := api.Errorf(api.ErrUnavailable, "server %s is no longer the leader", s.name)
	if l == nil {
		return s.store.Txn().If(clientv3.Compare(clientv3.Version(electionPrefix+"/none"), "<", 0), notLeader)
	}
	return s.store.Txn().If(clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev), notLeader)
}

func (s *Server) isLeader() bool {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	return s.leader != nil
}

func (s *Server) version() api.Version {
	v := api.Version{Version: version.String(), Server: s.name, IsLeader: s.isLeader()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if resp, err := s.cli.Get(ctx, electionPrefix+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1)); err == nil && len(resp.Kvs) > 0 {
		v.Leader = string(resp.Kvs[0].Value)
	}
	return v
}

// collectTasks deletes finished tasks older than the retention period.
func (s *Server) collectTasks(ctx context.Context) {
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		cutoff := time.Now().Add(-s.cfg.TaskRetention)
		var old []api.Object
		s.cache.Each(api.KindTask, func(o api.Object) {
			if tk := o.(*api.Task); tk.Finished != nil && tk.Finished.Before(cutoff) {
				old = append(old, o)
			}
		})
		for _, o := range old {
			if _, err := s.leaderTxn().Delete(o).Commit(ctx); err != nil && ctx.Err() == nil {
				s.log.Debug("cannot delete old task", "task", o.GetMeta().ID, "err", err)
			}
		}
		if len(old) > 0 {
			s.log.Info("deleted finished tasks past retention", "count", len(old), "retention", s.cfg.TaskRetention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
