package auth

import (
	"testing"
	"time"
)

func TestPasswords(t *testing.T) {
	h := HashPassword("correct horse battery")
	if !CheckPassword(h, "correct horse battery") || CheckPassword(h, "correct horse batterz") || CheckPassword("", "correct horse battery") {
		t.Fatal("CheckPassword accepts a wrong password or refuses the right one")
	}
	if h == HashPassword("correct horse battery") {
		t.Fatal("two hashes of one password are the same: no salt")
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=1,t=1,p=1$$", "$bcrypt$x$y$z$w"} {
		if CheckPassword(bad, "x") {
			t.Fatalf("a malformed hash %q accepts a password", bad)
		}
	}
	if err := ValidatePassword("alice", "short"); err == nil {
		t.Fatal("a 5-character password is accepted")
	}
}

func TestLoginsSlowDownGuessing(t *testing.T) {
	l := NewLogins()
	for i := range LoginBurst {
		if _, ok := l.Allow("alice", "192.0.2.1"); !ok {
			t.Fatalf("attempt %d refused within the burst", i+1)
		}
		l.Failed("alice", "192.0.2.1")
	}
	wait, ok := l.Allow("alice", "192.0.2.9")
	if ok || wait <= 0 || wait > LoginEvery+time.Second {
		t.Fatalf("after %d failures from one address, alice from another: allowed %v, wait %s", LoginBurst, ok, wait)
	}
	if _, ok := l.Allow("bob", "192.0.2.1"); ok {
		t.Fatal("another user from the guessing address is not slowed down")
	}
	if _, ok := l.Allow("bob", "198.51.100.7"); !ok {
		t.Fatal("another user from another address is slowed down")
	}
}

// A wrong user costs what a wrong password does (the same argon2id work):
// compare the two results' ns/op.
func BenchmarkCheckPassword(b *testing.B) {
	h := HashPassword("correct horse battery")
	b.Run("wrong-password", func(b *testing.B) {
		for range b.N {
			CheckPassword(h, "wrong")
		}
	})
	b.Run("unknown-user", func(b *testing.B) {
		for range b.N {
			CheckPassword("", "wrong")
		}
	})
}
