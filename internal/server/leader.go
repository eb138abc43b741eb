package server

import (
	"context"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
	"github.com/vdc-project/vdc/internal/version"
)

// lead starts the leader's duties; they stop when ctx ends.
func (s *Server) lead(ctx context.Context) {
	s.runner.Start(ctx)
	go s.liveness.Monitor(ctx)
	go s.ha.MonitorGuests(ctx)
	go s.collectTasks(ctx)
}

// leaderTxn starts a transaction that commits only while this server still
// leads.
func (s *Server) leaderTxn() *store.Txn { return s.elect.Txn() }

func (s *Server) isLeader() bool { return s.elect.IsLeader() }

func (s *Server) version() api.Version {
	v := api.Version{Version: version.String(), Server: s.name, IsLeader: s.isLeader()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	v.Leader, _ = s.elect.Leader(ctx)
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
