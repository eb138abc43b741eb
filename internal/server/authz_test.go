package server_test

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// userClient is a client acting as user (a token of its own).
func userClient(t *testing.T, d *dc, user string) *client.Client {
	t.Helper()
	tok, err := d.c.CreateToken(context.Background(), api.TokenCreateRequest{User: user})
	if err != nil {
		t.Fatal(err)
	}
	return clientWithToken(t, d, tok.Token)
}

func (d *dc) permit(object, user, role string, propagate bool) string {
	d.t.Helper()
	t := d.run(d.c.Create(context.Background(), api.KindPermission,
		api.PermissionCreateRequest{Principal: user, Role: role, Object: object, Propagate: propagate}))
	return t.Target.Name
}

func vmNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	var names []string
	for _, v := range mustList[*api.VM](t, c, api.KindVM) {
		names = append(names, v.Metadata.Name)
	}
	slices.Sort(names)
	return names
}

func power(c *client.Client, vm, action string) error {
	t, err := c.Power(context.Background(), vm, api.PowerRequest{Action: action})
	if err == nil {
		_, err = c.Wait(context.Background(), t)
	}
	return err
}

// Permissions on the inventory decide what a user may see and do, the
// way vSphere's do, and a change takes effect with the next request.
func TestPermissionsDecideWhatAUserMay(t *testing.T) {
	d := newDC(t, 2)
	ctx := context.Background()
	for _, v := range []struct{ name, host string }{{"web1", "host-1"}, {"db1", "host-2"}} {
		d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: v.name, Host: v.host, CPUs: 1, Memory: api.MustSize("64MiB")}))
	}
	alice := userClient(t, d, "alice")

	// No permission: nothing to see, and what is not seen does not exist.
	if got := vmNames(t, alice); len(got) != 0 {
		t.Fatalf("alice without permissions lists VMs %v", got)
	}
	if _, err := client.Get[*api.VM](ctx, alice, api.KindVM, "web1"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("alice reads web1 without permissions: %v, want 404", err)
	}
	if err := power(alice, "web1", api.ActionStart); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("alice starts web1 without permissions: %v, want 404", err)
	}
	if _, err := alice.Version(ctx); err != nil {
		t.Fatalf("any user reads the version: %v", err)
	}

	// ReadOnly on the root: everything seen, nothing changed.
	d.permit("root", "alice", "ReadOnly", true)
	if got := vmNames(t, alice); !slices.Equal(got, []string{"db1", "web1"}) {
		t.Fatalf("alice with ReadOnly lists %v", got)
	}
	err := power(alice, "web1", api.ActionStart)
	if !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "VirtualMachine.Interact.PowerOn") {
		t.Fatalf("ReadOnly alice starts web1: %v, want 403 naming the privilege", err)
	}
	if _, err := alice.Update(ctx, api.KindHost, "host-1", api.HostUpdateRequest{Labels: map[string]string{"a": "b"}}, 0); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("ReadOnly alice changes host-1: %v, want 403", err)
	}
	if _, err := alice.Create(ctx, api.KindPermission, api.PermissionCreateRequest{Principal: "alice", Role: "Administrator", Object: "root"}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("ReadOnly alice makes herself Administrator: %v, want 403", err)
	}

	// VirtualMachineUser on host-1: its VMs power on, the others do not,
	// and no VM can be made.
	d.permit("hosts:host-1", "alice", "VirtualMachineUser", true)
	if err := power(alice, "web1", api.ActionStart); err != nil {
		t.Fatalf("alice, VirtualMachineUser on host-1, starts web1: %v", err)
	}
	if err := power(alice, "db1", api.ActionStart); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("alice starts db1 on host-2: %v, want 403", err)
	}
	if _, err := alice.Update(ctx, api.KindVM, "web1", api.VMUpdateRequest{CPUs: ptr(2)}, 0); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("VirtualMachineUser alice reconfigures web1: %v, want 403", err)
	}
	if _, err := alice.CreateVM(ctx, api.VMCreateRequest{Name: "new", Host: "host-1", CPUs: 1, Memory: api.MustSize("64MiB")}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("VirtualMachineUser alice creates a VM: %v, want 403", err)
	}

	// NoAccess on one VM hides it, under the rights of its host; taking
	// it away shows it again with the very next request.
	deny := d.permit("vms:web1", "alice", "NoAccess", false)
	if got := vmNames(t, alice); !slices.Equal(got, []string{"db1"}) {
		t.Fatalf("alice with NoAccess on web1 lists %v", got)
	}
	if err := power(alice, "web1", api.ActionStop); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("alice stops web1 under NoAccess: %v, want 404", err)
	}
	d.run(d.c.Delete(ctx, api.KindPermission, deny, nil))
	if err := power(alice, "web1", api.ActionStop); err != nil {
		t.Fatalf("alice stops web1 once NoAccess is gone: %v", err)
	}
}

// Roles and permissions refuse bad input, clearly, and change nothing.
func TestRolesAndPermissionsBadInput(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindRole, api.RoleCreateRequest{Name: "Snapshotter",
		Privileges: []string{"System.Read", "VirtualMachine.State.CreateSnapshot"}}))
	d.permit("hosts:host-1", "carol", "Snapshotter", true)
	for _, c := range []struct {
		name string
		kind string
		req  any
		want error
		says string
	}{
		{"unknown privilege", api.KindRole, api.RoleCreateRequest{Name: "x", Privileges: []string{"VirtualMachine.Fly"}}, api.ErrInvalid, "VirtualMachine.Fly"},
		{"built-in name", api.KindRole, api.RoleCreateRequest{Name: "ReadOnly", Privileges: []string{"System.Read"}}, api.ErrConflict, "built in"},
		{"no privileges", api.KindRole, api.RoleCreateRequest{Name: "x"}, api.ErrInvalid, "NoAccess"},
		{"unknown role", api.KindPermission, api.PermissionCreateRequest{Principal: "bob", Role: "Wizard", Object: "root"}, api.ErrNotFound, "Wizard"},
		{"bad object", api.KindPermission, api.PermissionCreateRequest{Principal: "bob", Role: "ReadOnly", Object: "planet:earth"}, api.ErrInvalid, "KIND:NAME"},
		{"unknown object", api.KindPermission, api.PermissionCreateRequest{Principal: "bob", Role: "ReadOnly", Object: "vms:nope"}, api.ErrNotFound, "nope"},
		{"the admin", api.KindPermission, api.PermissionCreateRequest{Principal: "admin", Role: "NoAccess", Object: "root"}, api.ErrConflict, "always"},
		{"twice", api.KindPermission, api.PermissionCreateRequest{Principal: "carol", Role: "ReadOnly", Object: "hosts:host-1"}, api.ErrConflict, "already"},
		{"bad principal", api.KindPermission, api.PermissionCreateRequest{Principal: "a b", Role: "ReadOnly", Object: "root"}, api.ErrInvalid, "user"},
	} {
		if _, err := d.c.Create(ctx, c.kind, c.req); !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %v saying %q", c.name, err, c.want, c.says)
		}
	}
	if _, err := d.c.Delete(ctx, api.KindRole, "Snapshotter", nil); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "in use") {
		t.Errorf("delete a role in use: %v, want 409", err)
	}
	if _, err := d.c.Delete(ctx, api.KindRole, "Administrator", nil); !errors.Is(err, api.ErrConflict) {
		t.Errorf("delete a built-in role: %v, want 409", err)
	}
	if n := len(mustList[*api.Permission](t, d.c, api.KindPermission)); n != 1 {
		t.Errorf("%d permissions after the refused requests, want 1", n)
	}
	if n := len(mustList[*api.Role](t, d.c, api.KindRole)); n != 6 {
		t.Errorf("%d roles (5 built in and Snapshotter), want 6", n)
	}
}

// Every API call, made by a user with no rights, is refused (403, or 404
// where the object may not even be seen) or, for a list, answers nothing;
// nothing changes. The calls come from the OpenAPI document, which lists
// what each needs.
func TestNoAccessUserIsRefusedEverywhere(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	// A folder named like the VM: the folder calls' {name} finds it.
	d.run(d.c.Create(ctx, api.KindFolder, api.FolderCreateRequest{Path: "/web1"}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web1"}))
	d.permit("root", "mallory", "NoAccess", true)
	mallory := userClient(t, d, "mallory")
	var doc struct {
		Paths map[string]map[string]struct {
			On string `json:"x-vdc-privilege-on"`
		} `json:"paths"`
	}
	if err := d.c.Do(ctx, client.Request{Method: http.MethodGet, Path: "/openapi.json"}, &doc); err != nil {
		t.Fatal(err)
	}
	tasks := mustList[*api.Task](t, d.c, api.KindTask)
	names := map[string]string{"{name}": "web1", "{id}": tasks[0].Metadata.ID, "{snapshot}": "s1", "{disk}": "disk0", "{nic}": "nic0", "{file}": "disk"}
	before := countAll(t, d.c)
	calls := 0
	for path, ops := range doc.Paths {
		for method, op := range ops {
			method = strings.ToUpper(method)
			if op.On == "public" || op.On == "any" || strings.HasSuffix(path, "/events") {
				continue
			}
			p := strings.TrimPrefix(path, "/api/v1")
			for k, v := range names {
				p = strings.ReplaceAll(p, k, v)
			}
			if strings.HasPrefix(p, "/hosts/") {
				p = strings.Replace(p, "web1", "host-1", 1)
			}
			if strings.HasPrefix(p, "/roles/") {
				p = strings.Replace(p, "web1", "ReadOnly", 1)
			}
			var body any
			switch {
			case path == "/api/v1/permissions" && method == "POST":
				body = api.PermissionCreateRequest{Principal: "mallory", Role: "Administrator", Object: "root", Propagate: true}
			case method != "GET" && method != "DELETE":
				body = map[string]any{}
			}
			var out struct {
				Items []any `json:"items"`
			}
			err := mallory.Do(ctx, client.Request{Method: method, Path: p, Body: body}, &out)
			calls++
			switch {
			case op.On == "list":
				if err != nil || len(out.Items) != 0 {
					t.Errorf("%s %s as NoAccess: %v, %d items; want an empty list", method, p, err, len(out.Items))
				}
			case !errors.Is(err, api.ErrForbidden) && !errors.Is(err, api.ErrNotFound):
				t.Errorf("%s %s as NoAccess: %v, want 403 or 404", method, p, err)
			}
		}
	}
	if calls < 70 {
		t.Fatalf("only %d calls in the OpenAPI document", calls)
	}
	if after := countAll(t, d.c); !maps.Equal(after, before) {
		t.Fatalf("calls refused to a NoAccess user changed the inventory: %v, was %v", after, before)
	}
	if f := d.vm("web1").Spec.Folder.Name; f != "/web1" {
		t.Fatalf("calls refused to a NoAccess user moved web1 to %q", f)
	}
}

// countAll counts the objects of each kind, tasks aside.
func countAll(t *testing.T, c *client.Client) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, kind := range []string{api.KindDatacenter, api.KindCluster, api.KindHost, api.KindDatastore, api.KindPortGroup,
		api.KindSwitch, api.KindVM, api.KindImage, api.KindRole, api.KindPermission, api.KindFolder} {
		out[kind] = len(mustList[*api.VM](t, c, kind))
	}
	return out
}

// Making a VM needs rights where it goes, as in vSphere: Create on its
// folder and cluster, AllocateSpace on its disks' datastores, Assign on
// its NICs' port groups; a user who holds Create nowhere is refused before
// the request is even read.
func TestCreateNeedsRightsWhereTheVMGoes(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.Create(ctx, api.KindFolder, api.FolderCreateRequest{Path: "/web"}))
	d.run(d.c.Create(ctx, api.KindRole, api.RoleCreateRequest{Name: "Maker",
		Privileges: []string{"System.Read", "VirtualMachine.Inventory.Create", "Datastore.AllocateSpace", "Network.Assign"}}))
	for _, o := range []string{"folders:/web", "clusters:cluster1", "portgroups:vm-network"} {
		d.permit(o, "carol", "Maker", true)
	}
	carol := userClient(t, d, "carol")
	req := func(name, folder string) api.VMCreateRequest {
		return api.VMCreateRequest{Name: name, CPUs: 1, Memory: api.MustSize("64MiB"), Folder: folder,
			Disks: []api.DiskRequest{{Size: api.MustSize("1GiB")}}}
	}
	_, err := carol.CreateVM(ctx, req("w1", "/web"))
	if !errors.Is(err, api.ErrNotFound) && !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "datastore") {
		t.Fatalf("carol makes a VM with a disk on a datastore she has no right on: %v", err)
	}
	d.permit("datastores:datastore1", "carol", "Maker", false)
	if _, err := carol.Wait(ctx, mustTask(t)(carol.CreateVM(ctx, req("w1", "/web")))); err != nil {
		t.Fatalf("carol makes a VM in /web: %v", err)
	}
	if _, err := carol.CreateVM(ctx, req("w2", "")); !errors.Is(err, api.ErrForbidden) && !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("carol makes a VM at the datacenter's top level: %v, want 403 or 404", err)
	}
	dave := userClient(t, d, "dave")
	if _, err := dave.CreateVM(ctx, api.VMCreateRequest{}); !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "on no object") {
		t.Fatalf("dave, with no permission, sends an empty create: %v, want 403", err)
	}
	if got := vmNames(t, d.c); !slices.Equal(got, []string{"w1"}) {
		t.Fatalf("VMs after the refused creates: %v", got)
	}
}

func mustTask(t *testing.T) func(*api.Task, error) *api.Task {
	return func(tk *api.Task, err error) *api.Task {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
}

// A token made for a role can do what its user may and the role allows,
// no more: the admin's own narrowed to ReadOnly changes nothing.
func TestTokenNarrowedToARole(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	tok, err := d.c.CreateToken(ctx, api.TokenCreateRequest{User: "admin", Role: "ReadOnly"})
	if err != nil {
		t.Fatal(err)
	}
	ro := clientWithToken(t, d, tok.Token)
	if got := vmNames(t, ro); !slices.Equal(got, []string{"web1"}) {
		t.Fatalf("the admin's ReadOnly token lists %v", got)
	}
	if err := power(ro, "web1", api.ActionStart); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("the admin's ReadOnly token starts web1: %v, want 403", err)
	}
	if _, err := ro.CreateVM(ctx, api.VMCreateRequest{Name: "x", CPUs: 1, Memory: api.MustSize("64MiB")}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("the admin's ReadOnly token creates a VM: %v, want 403", err)
	}
	if _, err := ro.CreateToken(ctx, api.TokenCreateRequest{}); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("the admin's ReadOnly token makes a token: %v, want 403", err)
	}
	d.permit("hosts:host-1", "alice", "VirtualMachinePowerUser", true)
	tok, err = d.c.CreateToken(ctx, api.TokenCreateRequest{User: "alice", Role: "VirtualMachineUser"})
	if err != nil {
		t.Fatal(err)
	}
	vu := clientWithToken(t, d, tok.Token)
	if err := power(vu, "web1", api.ActionStart); err != nil {
		t.Fatalf("alice's VirtualMachineUser token starts web1: %v", err)
	}
	if _, err := vu.Update(ctx, api.KindVM, "web1", api.VMUpdateRequest{Description: ptr("x")}, 0); !errors.Is(err, api.ErrForbidden) {
		t.Fatalf("alice's VirtualMachineUser token reconfigures web1 (alice may, the token may not): %v, want 403", err)
	}
	if _, err := d.c.CreateToken(ctx, api.TokenCreateRequest{User: "alice", Role: "Wizard"}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("a token for an unknown role: %v, want 404", err)
	}
}
