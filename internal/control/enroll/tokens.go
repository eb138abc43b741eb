package enroll

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/auth"
	"github.com/vdc-project/vdc/internal/store"
)

const joinTokenPrefix = store.SysPrefix + "jointokens/"

type joinTokenRecord struct {
	Uses    int       `json:"uses"`
	Expires time.Time `json:"expires"`
	Cluster string    `json:"cluster"` // ID
	// Host, when set, is the only host (ID) the token joins as: it was
	// made by `vdc host replace`, whose revocation time is Replaced. A
	// later replace, or the join, makes it stale.
	Host     string    `json:"host,omitempty"`
	Replaced time.Time `json:"replaced,omitzero"`
}

// errBadJoinToken is the one answer to every join token that is not good,
// whatever name it comes with, so that a caller without a good token
// learns nothing about the inventory.
func errBadJoinToken() error {
	return api.Errorf(api.ErrUnauthorized, "invalid join token: malformed, unknown, expired or used up; create a new one with `vdc host token create`")
}

// addJoinToken adds a new join token to txn and returns it as the host
// presents it (vdc1.<secret>.<CA fingerprint>). Only its hash is stored,
// under a lease so that etcd forgets it when it expires.
func (e *Service) addJoinToken(ctx context.Context, txn *store.Txn, rec joinTokenRecord) (string, error) {
	ttl := int64(math.Ceil(time.Until(rec.Expires).Seconds()))
	lease, err := e.st.Store.Client().Grant(ctx, max(ttl, 1))
	if err != nil {
		return "", fmt.Errorf("make a lease for a join token: %w", err)
	}
	secret := auth.NewSecret()
	b, _ := json.Marshal(rec)
	txn.PutRaw(joinTokenPrefix+auth.Hash(secret), string(b), clientv3.WithLease(lease.ID))
	return "vdc1." + secret + "." + e.ca.Fingerprint(), nil
}

// joinToken is a good join token as read, at its etcd revision.
type joinToken struct {
	key string
	rev int64
	rec joinTokenRecord
}

// readJoinToken checks a join token without spending it. Every way of
// being bad gets the same error.
func (e *Service) readJoinToken(ctx context.Context, tok string) (*joinToken, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "vdc1" || parts[1] == "" || parts[2] != e.ca.Fingerprint() {
		return nil, errBadJoinToken()
	}
	key := joinTokenPrefix + auth.Hash(parts[1])
	resp, err := e.st.Store.Client().Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read join token: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errBadJoinToken()
	}
	jt := &joinToken{key: key, rev: resp.Kvs[0].ModRevision}
	if err := json.Unmarshal(resp.Kvs[0].Value, &jt.rec); err != nil {
		return nil, fmt.Errorf("read join token: %w", err)
	}
	if time.Now().After(jt.rec.Expires) || jt.rec.Uses < 1 {
		return nil, errBadJoinToken()
	}
	return jt, nil
}

// errJoinTokenRace is what a join gets when another spent the same token
// in between (the join tries again).
var errJoinTokenRace = api.Errorf(api.ErrConflict, "join token is being used concurrently; retry")

// spend adds spending one use of the token to txn, which then commits only
// if nobody spent one meanwhile. A spent token stays until it expires.
func (jt *joinToken) spend(txn *store.Txn) {
	rec := jt.rec
	rec.Uses--
	b, _ := json.Marshal(rec)
	txn.If(clientv3.Compare(clientv3.ModRevision(jt.key), "=", jt.rev), errJoinTokenRace).
		PutRaw(jt.key, string(b), clientv3.WithIgnoreLease())
}
