package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func login(t *testing.T, d *dc, user, password string) (*client.Client, error) {
	t.Helper()
	var s api.Session
	if err := d.c.Do(context.Background(), client.Request{Method: http.MethodPost, Path: "/sessions",
		Body: api.LoginRequest{User: user, Password: password}}, &s); err != nil {
		return nil, err
	}
	if s.Token == "" || s.User != user || !s.Expires.After(s.Created) || s.MaxExpires.Before(s.Expires) {
		t.Fatalf("session of %s: %+v", user, s)
	}
	return clientWithToken(t, d, s.Token), nil
}

// Users log in with their password and act with the rights of their
// permissions and their groups'; a changed password or a disabled user
// ends their sessions at once; wrong users and wrong passwords get one
// answer; repeated failures slow down.
func TestUsersGroupsAndSessions(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	const pw = "correct horse battery"
	d.run(d.c.Create(ctx, api.KindUser, api.UserCreateRequest{Name: "alice", Password: pw, FullName: "Alice A."}))
	for _, c := range []struct {
		name string
		req  api.UserCreateRequest
		want error
	}{
		{"short password", api.UserCreateRequest{Name: "bob", Password: "short"}, api.ErrInvalid},
		{"password is the name", api.UserCreateRequest{Name: "bobbybobby", Password: "BobbyBobby"}, api.ErrInvalid},
		{"taken", api.UserCreateRequest{Name: "alice", Password: pw}, api.ErrConflict},
		{"the admin", api.UserCreateRequest{Name: "admin", Password: pw}, api.ErrConflict},
		{"bad name", api.UserCreateRequest{Name: "a\x1b[2J", Password: pw}, api.ErrInvalid},
	} {
		if _, err := d.c.Create(ctx, api.KindUser, c.req); !errors.Is(err, c.want) {
			t.Errorf("create user (%s): %v, want %v", c.name, err, c.want)
		}
	}
	if tasks := mustList[*api.Task](t, d.c, api.KindTask); strings.Contains(taskText(tasks), pw) {
		t.Fatal("a task record holds a password")
	}

	_, wrongPassword := login(t, d, "alice", "not the password")
	_, wrongUser := login(t, d, "nobody", pw)
	if !errors.Is(wrongPassword, api.ErrUnauthorized) || wrongUser == nil || wrongPassword.Error() != wrongUser.Error() {
		t.Fatalf("wrong password: %v; wrong user: %v; want the same 401", wrongPassword, wrongUser)
	}
	alice, err := login(t, d, "alice", pw)
	if err != nil {
		t.Fatalf("alice logs in: %v", err)
	}
	if got := vmNames(t, alice); len(got) != 0 {
		t.Fatalf("alice, with no permission, sees %v", got)
	}
	// A group's permission is its members'.
	d.run(d.c.Create(ctx, api.KindGroup, api.GroupCreateRequest{Name: "ops", Members: []string{"alice"}}))
	d.run(d.c.Create(ctx, api.KindPermission, api.PermissionCreateRequest{Principal: "ops", Group: true, Role: "ReadOnly", Object: "root", Propagate: true}))
	if got := vmNames(t, alice); len(got) != 1 {
		t.Fatalf("alice, in group ops (ReadOnly), sees %v", got)
	}
	if _, err := d.c.Create(ctx, api.KindGroup, api.GroupCreateRequest{Name: "x", Members: []string{"ghost"}}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("a group with an unknown member: %v, want 404", err)
	}
	if _, err := d.c.Delete(ctx, api.KindGroup, "ops", nil); !errors.Is(err, api.ErrConflict) {
		t.Errorf("delete a group a permission names: %v, want 409", err)
	}
	var sessions api.List[api.Token]
	if err := alice.Do(ctx, client.Request{Method: http.MethodGet, Path: "/sessions"}, &sessions); err != nil || len(sessions.Items) != 1 {
		t.Fatalf("alice's sessions: %+v %v", sessions.Items, err)
	}

	// Her own password change ends her session.
	newPW := "another long password"
	if _, err := alice.Update(ctx, api.KindUser, "alice", api.UserUpdateRequest{Password: &newPW}, 0); err != nil {
		t.Fatalf("alice changes her password: %v", err)
	}
	if _, err := alice.Version(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("alice's session after her password changed: %v, want 401", err)
	}
	if _, err := login(t, d, "alice", pw); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("login with the old password: %v", err)
	}
	if alice, err = login(t, d, "alice", newPW); err != nil {
		t.Fatalf("login with the new password: %v", err)
	}
	// Disabled: the session stops at once, and no login.
	yes := true
	d.run(d.c.Update(ctx, api.KindUser, "alice", api.UserUpdateRequest{Disabled: &yes}, 0))
	if _, err := alice.Version(ctx); !errors.Is(err, api.ErrUnauthorized) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("a disabled user's session: %v, want 401 saying disabled", err)
	}
	if _, err := login(t, d, "alice", newPW); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a disabled user logs in: %v", err)
	}
	// Guessing slows down: the failures above and a few more use up
	// alice's allowance.
	var last error
	for range 6 {
		if _, last = login(t, d, "alice", "guess"); errors.Is(last, api.ErrTooManyRequests) {
			break
		}
	}
	if !errors.Is(last, api.ErrTooManyRequests) || !strings.Contains(last.Error(), "try again in") {
		t.Fatalf("repeated bad passwords: %v, want 429 saying when to try again", last)
	}
}

func taskText(ts []*api.Task) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteString(t.Message)
		b.WriteString(string(t.Result))
		b.WriteString(string(t.Params))
	}
	return b.String()
}
