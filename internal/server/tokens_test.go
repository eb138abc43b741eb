package server_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/server"
)

// clientWithToken is d's client with another token.
func clientWithToken(t *testing.T, d *dc, token string) *client.Client {
	t.Helper()
	cfg, err := client.LoadConfig(d.srv.ClientConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Token = token
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDeletedTokenStopsWorkingAtOnce(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	tok, err := d.c.CreateToken(ctx, api.TokenCreateRequest{User: "alice", Description: "for the test"})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Token == "" || tok.ID == "" || tok.User != "alice" {
		t.Fatalf("created token: %+v", tok)
	}
	alice := clientWithToken(t, d, tok.Token)
	for i := 0; i < 3; i++ { // the first check reads etcd, the next ones the cache
		if _, err := alice.Version(ctx); err != nil {
			t.Fatalf("request %d with a new token: %v", i+1, err)
		}
	}
	ts, err := d.c.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, x := range ts {
		listed = listed || x.ID == tok.ID && x.User == "alice" && x.Token == ""
	}
	if !listed {
		t.Fatalf("token %s not listed (without its secret): %+v", tok.ID, ts)
	}
	if _, err := d.c.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	// The very next request.
	if _, err := alice.Version(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("first request after the token was deleted: %v, want 401", err)
	}
	if _, err := d.c.DeleteToken(ctx, tok.ID); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("deleting it again: %v, want 404", err)
	}
	if _, err := d.c.DeleteToken(ctx, "not-an-id"); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("deleting a malformed ID: %v, want 400", err)
	}
}

// A token deleted behind this server's back (by another server, or in
// etcd) stops working as soon as the watch brings the delete.
func TestTokenDeletedInEtcdStopsWorkingWithinTheWatchDelay(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	tok, err := d.c.CreateToken(ctx, api.TokenCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	bob := clientWithToken(t, d, tok.Token).WithRetry(0)
	for i := 0; i < 3; i++ {
		if _, err := bob.Version(ctx); err != nil {
			t.Fatalf("request %d with a new token: %v", i+1, err)
		}
	}
	if _, err := d.srv.EtcdForTest().Delete(ctx, server.TokenKeyForTest(tok.Token)); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	served := 0
	for {
		_, err := bob.Version(ctx)
		if errors.Is(err, api.ErrUnauthorized) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		served++
		if time.Since(deleted) > 10*time.Second {
			t.Fatalf("a token deleted in etcd still works after %s (%d requests served)", time.Since(deleted).Round(time.Millisecond), served)
		}
	}
	t.Logf("deleted token refused %s after the delete, %d requests served from the cache meanwhile", time.Since(deleted).Round(time.Microsecond), served)
	for i := 0; i < 5; i++ {
		if _, err := bob.Version(ctx); !errors.Is(err, api.ErrUnauthorized) {
			t.Fatalf("request %d after the first refusal: %v, want 401", i+1, err)
		}
	}
}

// Deleting the admin token sticks: a restarted server does not register
// it again from its data dir, it makes a new one.
func TestDeletedAdminTokenStaysDeletedAcrossRestarts(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	old := adminToken(t, d)
	helper, err := d.c.CreateToken(ctx, api.TokenCreateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := d.c.ListTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin := clientWithToken(t, d, helper.Token)
	for _, x := range ts {
		if x.User == "admin" && x.ID != helper.ID {
			if _, err := admin.DeleteToken(ctx, x.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	addr := apiAddr(d)
	d.srv.Stop()
	d.srv, d.c = startServerAt(t, d.dir, addr)
	if _, err := clientWithToken(t, d, old).WithRetry(0).Version(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("the deleted admin token after a restart: %v, want 401", err)
	}
	if _, err := d.c.Version(ctx); err != nil {
		t.Fatalf("the new admin token: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(d.dir, "server", "admin-token"))
	if err != nil || strings.TrimSpace(string(b)) == old {
		t.Fatalf("admin-token file still holds the deleted token (%v)", err)
	}
}

// A token rotated is replaced: the old secret stops working, the new one
// works, as the same user.
func TestTokenRotate(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	old, err := d.c.CreateToken(ctx, api.TokenCreateRequest{User: "admin", Description: "second admin token"})
	if err != nil {
		t.Fatal(err)
	}
	c := clientWithToken(t, d, old.Token)
	var fresh api.Token
	if err := c.Do(ctx, client.Request{Method: "POST", Path: "/tokens/rotate"}, &fresh); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if fresh.Token == "" || fresh.Token == old.Token || fresh.User != "admin" {
		t.Fatalf("rotated token: %+v", fresh)
	}
	if _, err := c.Version(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("the old token after a rotate: %v, want 401", err)
	}
	if _, err := clientWithToken(t, d, fresh.Token).ListTokens(ctx); err != nil {
		t.Fatalf("the new token: %v", err)
	}
}
