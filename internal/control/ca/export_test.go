package ca

import (
	"time"

	"github.com/vdc-project/vdc/internal/pki"
)

// SetFresh makes c (with keyPEM) the CA a is to store, as OpenEmbedded
// does for a new member.
func SetFresh(a *Authority, c *pki.CA, keyPEM []byte) { a.fresh = &fresh{ca: c, keyPEM: keyPEM} }

// DriveMemberChecks replaces KeepMemberCert's ticker: a send on tick is a
// check, whose outcome comes on checked. Call before KeepMemberCert.
func DriveMemberChecks(a *Authority) (tick chan<- time.Time, checked <-chan error) {
	t, c := make(chan time.Time), make(chan error, 1)
	a.tick, a.checked = t, func(err error) { c <- err }
	return t, c
}
