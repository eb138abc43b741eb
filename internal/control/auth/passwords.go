package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/time/rate"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/store"
)

// Passwords are stored as argon2id hashes (RFC 9106's second
// recommended setting, with 64 MiB), one record per user under
// passwordPrefix, in PHC string form:
// $argon2id$v=19$m=65536,t=3,p=2$SALT$HASH.
const (
	passwordPrefix = store.SysPrefix + "passwords/"
	argonTime      = 3
	argonMemory    = 64 << 10 // KiB
	argonThreads   = 2
	argonKeyLen    = 32
	// MinPassword is the shortest password accepted.
	MinPassword = 8
)

// PasswordKey is where the hash of the user with this ID is stored.
func PasswordKey(userID string) string { return passwordPrefix + userID }

// HashPassword is the stored form of a password.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		panic(err)
	}
	return encodeHash(salt, argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen))
}

func encodeHash(salt, key []byte) string {
	b64 := base64.RawStdEncoding.EncodeToString
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads, b64(salt), b64(key))
}

// dummyHash is checked against when the user does not exist, so that a
// wrong user takes as long as a wrong password.
var dummyHash = HashPassword("no such user")

// CheckPassword says whether password matches the stored hash (none: the
// user has no password; the time taken is the same).
func CheckPassword(stored, password string) bool {
	ok := stored != ""
	if !ok {
		stored = dummyHash
	}
	var m, t uint32
	var p uint8
	parts := strings.Split(stored, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 || len(want) > 64 || t == 0 || t > 16 || m < 8 || m > 1<<22 || p == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1 && ok
}

// ValidatePassword says why a password cannot be used.
func ValidatePassword(user, password string) error {
	switch {
	case len(password) < MinPassword:
		return api.Errorf(api.ErrInvalid, "the password of user %s must be at least %d characters", user, MinPassword)
	case len(password) > 1024:
		return api.Errorf(api.ErrInvalid, "the password of user %s must be at most 1024 bytes", user)
	case strings.EqualFold(password, user):
		return api.Errorf(api.ErrInvalid, "the password of user %s must not be the user's name", user)
	}
	return nil
}

// Logins slows down password guessing: failed logins draw from a bucket
// per user and one per client address (LoginBurst at once, then one per
// LoginEvery); with either empty a login is refused before its password
// is checked, saying when to try again.
type Logins struct {
	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

const (
	LoginBurst = 5
	LoginEvery = 2 * time.Second
)

func NewLogins() *Logins { return &Logins{buckets: map[string]*rate.Limiter{}} }

func (l *Logins) bucket(key string) *rate.Limiter {
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) > 100000 { // an address sweep: start again
			l.buckets = map[string]*rate.Limiter{}
		}
		b = rate.NewLimiter(rate.Every(LoginEvery), LoginBurst)
		l.buckets[key] = b
	}
	return b
}

// Allow says whether user may try to log in from addr now, and if not,
// in how long.
func (l *Logins) Allow(user, addr string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var wait time.Duration
	for _, k := range []string{"user\x00" + user, "addr\x00" + addr} {
		if b := l.bucket(k); b.TokensAt(now) < 1 {
			r := b.ReserveN(now, 1)
			wait = max(wait, r.DelayFrom(now))
			r.CancelAt(now)
		}
	}
	return wait, wait == 0
}

// Failed counts a failed login of user from addr.
func (l *Logins) Failed(user, addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.bucket("user\x00"+user).AllowN(now, 1)
	l.bucket("addr\x00"+addr).AllowN(now, 1)
}

// ReadPassword reads the stored hash of the user with this ID ("" when
// none is stored).
func ReadPassword(ctx context.Context, st *store.Store, userID string) (string, error) {
	resp, err := st.Client().Get(ctx, PasswordKey(userID))
	if err != nil {
		return "", fmt.Errorf("read the password of user %s: %w", userID, err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return string(resp.Kvs[0].Value), nil
}
