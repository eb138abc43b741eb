package server

import (
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/server/idempotency"
	"github.com/vdc-project/vdc/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EtcdForTest is the server's etcd client, for tests that change the
// store behind the API's back (as another server or etcdctl would).
func (s *Server) EtcdForTest() *clientv3.Client { return s.cli }

// TokenKeyForTest is the etcd key of an API token.
func TokenKeyForTest(secret string) string { return store.SysPrefix + "tokens/" + auth.Hash(secret) }

// DropAnswersForTest makes the server drop the answer of the requests
// drop says so of, after their handler ran: the client sees the connection
// break with the work done, as when a server dies at the wrong moment.
func (s *Server) DropAnswersForTest(drop func(method, path string) bool) { s.dropAnswer.Store(&drop) }

// IdempotencyPrefixForTest is where Idempotency-Keys are recorded in etcd.
const IdempotencyPrefixForTest = idempotency.Prefix
