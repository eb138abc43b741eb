package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func auditLog(t *testing.T, c *client.Client, q url.Values) []api.AuditRecord {
	t.Helper()
	var l api.List[api.AuditRecord]
	if err := c.Do(context.Background(), client.Request{Method: http.MethodGet, Path: "/audit", Query: q}, &l); err != nil {
		t.Fatalf("read the audit trail: %v", err)
	}
	return l.Items
}

// waitAudit waits for a record of the trail that match accepts.
func waitAudit(t *testing.T, d *dc, what string, match func(api.AuditRecord) bool) api.AuditRecord {
	t.Helper()
	var got api.AuditRecord
	eventually(t, 10*time.Second, "the audit trail to record "+what, func() bool {
		for _, r := range auditLog(t, d.c, nil) {
			if match(r) {
				got = r
				return true
			}
		}
		return false
	})
	return got
}

// Who did what, from where, with which result and task: state changes,
// refusals, failed logins and bad tokens, join tokens; and the trail is
// for those allowed to read it.
func TestAuditTrail(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	task := d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	r := waitAudit(t, d, "the VM's creation", func(r api.AuditRecord) bool { return r.Action == "POST /api/v1/vms" })
	if r.User != "admin" || r.Result != api.AuditOK || r.Status != http.StatusAccepted || r.From != "127.0.0.1" || r.Task != task.Metadata.ID ||
		r.Privilege != "VirtualMachine.Inventory.Create" {
		t.Errorf("record of the VM's creation: %+v (task %s)", r, task.Metadata.ID)
	}

	d.permit("root", "mallory", "ReadOnly", true)
	mallory := userClient(t, d, "mallory")
	if err := power(mallory, "web1", api.ActionStop); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("ReadOnly mallory stops web1: %v", err)
	}
	r = waitAudit(t, d, "mallory's refused power-off", func(r api.AuditRecord) bool { return r.User == "mallory" && r.Result == api.AuditRefused })
	if r.Object != "vms:web1" || r.Status != http.StatusForbidden || r.Privilege != "VirtualMachine.Interact.PowerOff" || r.Message == "" {
		t.Errorf("record of mallory's refused power-off: %+v", r)
	}

	if _, err := login(t, d, "alice", "not a password"); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("login as a user that does not exist: %v", err)
	}
	waitAudit(t, d, "the failed login", func(r api.AuditRecord) bool {
		return r.Action == "POST /api/v1/sessions" && r.User == "alice" && r.Result == api.AuditRefused
	})
	if _, err := clientWithToken(t, d, "vdct.not-a-token").Version(ctx); !errors.Is(err, api.ErrUnauthorized) {
		t.Fatalf("a bad token: %v", err)
	}
	waitAudit(t, d, "the bad token", func(r api.AuditRecord) bool {
		return r.Action == "GET /api/v1/version" && r.User == "" && r.Status == http.StatusUnauthorized
	})
	if _, err := d.c.CreateJoinToken(ctx, api.JoinTokenRequest{}); err != nil {
		t.Fatal(err)
	}
	waitAudit(t, d, "the join token", func(r api.AuditRecord) bool { return r.Action == "POST /api/v1/join-tokens" && r.Result == api.AuditOK })

	// Filtered on the server; and only for those allowed.
	for _, r := range auditLog(t, d.c, url.Values{"user": {"mallory"}, "since": {"1h"}}) {
		if r.User != "mallory" {
			t.Fatalf("audit ?user=mallory holds %+v", r)
		}
	}
	if err := mallory.Do(ctx, client.Request{Method: http.MethodGet, Path: "/audit"}, nil); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("ReadOnly mallory reads the audit trail: %v, want 403", err)
	}
	if err := d.c.Do(ctx, client.Request{Method: http.MethodGet, Path: "/audit", Query: url.Values{"since": {"yesterday"}}}, nil); !errors.Is(err, api.ErrInvalid) {
		t.Fatalf("audit ?since=yesterday: %v, want 400", err)
	}
}
