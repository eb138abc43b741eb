package server_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func (d *dc) folder(path string, parents bool) *api.Task {
	d.t.Helper()
	return d.run(d.c.Create(context.Background(), api.KindFolder, api.FolderCreateRequest{Path: path, Parents: parents}))
}

func (d *dc) move(vm, folder string) *api.Task {
	d.t.Helper()
	return d.run(d.c.Action(context.Background(), api.KindVM, vm, "move", api.VMMoveRequest{Folder: folder}))
}

func getFolder(t *testing.T, c *client.Client, ref string) *api.Folder {
	t.Helper()
	f, err := client.Get[*api.Folder](context.Background(), c, api.KindFolder, ref)
	if err != nil {
		t.Fatalf("read folder %s: %v", ref, err)
	}
	return f
}

func folderPaths(t *testing.T, c *client.Client) []string {
	t.Helper()
	var out []string
	for _, f := range mustList[*api.Folder](t, c, api.KindFolder) {
		out = append(out, f.Spec.Path)
	}
	slices.Sort(out)
	return out
}

// vmsIn lists the names of the VMs directly in a folder (GET /vms?folder=).
func vmsIn(t *testing.T, c *client.Client, folder string) []string {
	t.Helper()
	vms, err := client.List[*api.VM](context.Background(), c, api.KindVM, url.Values{"folder": {folder}})
	if err != nil {
		t.Fatalf("list the vms in %s: %v", folder, err)
	}
	var out []string
	for _, v := range vms {
		out = append(out, v.Metadata.Name+" "+v.Spec.Folder.Name)
	}
	return out
}

// Folders nest and are named by their paths; two parents may each hold a
// folder of one name.
func TestFoldersNestAndAreFoundByPath(t *testing.T) {
	d := newDC(t, 0)
	ctx := context.Background()
	d.folder("/web", false)
	d.run(d.c.Create(ctx, api.KindFolder, api.FolderCreateRequest{Path: "/web/prod", Description: "production", Labels: map[string]string{"tier": "web"}}))
	d.folder("/db/prod", true) // and /db on the way
	if got, want := folderPaths(t, d.c), []string{"/db", "/db/prod", "/web", "/web/prod"}; !slices.Equal(got, want) {
		t.Fatalf("folders %v, want %v", got, want)
	}
	prod := getFolder(t, d.c, "/web/prod")
	if prod.Spec.Parent.Name != "/web" || prod.Spec.Datacenter.Name != "dc1" || getFolder(t, d.c, prod.Metadata.ID).Spec.Path != "/web/prod" ||
		prod.Spec.Description != "production" || prod.Metadata.Labels["tier"] != "web" {
		t.Fatalf("folder /web/prod reads as %+v %+v", prod.Metadata, prod.Spec)
	}
	if db := getFolder(t, d.c, "/db"); db.Spec.Description != "" || db.Status.Folders != 1 {
		t.Fatalf("/db, made on the way to /db/prod, reads as %+v %+v", db.Spec, db.Status)
	}
	if getFolder(t, d.c, "web").Spec.Path != "/web" || getFolder(t, d.c, "dc1:/db/prod").Spec.Path != "/db/prod" {
		t.Fatal("a folder is not found by its unique name, or by its datacenter and path")
	}
	if _, err := client.Get[*api.Folder](ctx, d.c, api.KindFolder, "prod"); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "2 folders") {
		t.Fatalf("read folder prod, a name two folders have: %v, want 400 saying so", err)
	}
}

// A VM made in a folder, or moved to one, shows its path; a rename shows
// at once in what is under the folder.
func TestFoldersHoldVMs(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.folder("/web/prod", true)
	d.folder("/db/prod", true)
	prod := getFolder(t, d.c, "/web/prod")
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web/prod"}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "top1", CPUs: 1, Memory: api.MustSize("64MiB")}))
	if f := d.vm("web1").Spec.Folder; f.Name != "/web/prod" || f.ID != prod.Metadata.ID {
		t.Fatalf("web1 made in /web/prod is in %+v", f)
	}
	if st := getFolder(t, d.c, "/web/prod").Status; st.VMs != 1 {
		t.Fatalf("/web/prod holds %+v, want 1 vm", st)
	}
	if st := getFolder(t, d.c, "/web").Status; st.VMs != 0 || st.Folders != 1 {
		t.Fatalf("/web holds %+v, want 1 folder and no vm", st)
	}

	// A rename of /web shows in the path of what is under it, in a read
	// and in a list.
	d.run(d.c.Update(ctx, api.KindFolder, "/web", api.FolderUpdateRequest{Name: ptr("www")}, 0))
	if got := vmsIn(t, d.c, "/www/prod"); !slices.Equal(got, []string{"web1 /www/prod"}) {
		t.Fatalf("vms in /www/prod after the rename: %v", got)
	}
	if d.vm("web1").Spec.Folder.Name != "/www/prod" || getFolder(t, d.c, "/www/prod").Spec.Parent.Name != "/www" {
		t.Fatal("the rename of /web does not show under it")
	}
	if got := vmsIn(t, d.c, "/"); !slices.Equal(got, []string{"top1 "}) {
		t.Fatalf("vms at the top level: %v", got)
	}

	// Moves, between folders and to the top.
	if tk := d.move("web1", "/db/prod"); !strings.Contains(tk.Message, "moved to /db/prod") {
		t.Fatalf("move task says %q", tk.Message)
	}
	if d.vm("web1").Spec.Folder.Name != "/db/prod" || len(vmsIn(t, d.c, "/www/prod")) != 0 {
		t.Fatal("web1 did not move to /db/prod")
	}
	d.move("web1", "/")
	if f := d.vm("web1").Spec.Folder; !f.IsZero() {
		t.Fatalf("web1 moved to / is in %+v", f)
	}
	d.move("top1", getFolder(t, d.c, "/db/prod").Metadata.ID)
	if d.vm("top1").Spec.Folder.Name != "/db/prod" {
		t.Fatal("a move to a folder named by its ID did not happen")
	}
}

// A folder is deleted only once it is empty; what holds it is named.
func TestFolderDeleteRefusedWhileItHoldsSomething(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.folder("/web/prod", true)
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web/prod"}))
	for path, says := range map[string]string{"/web": "prod", "/web/prod": "web1"} {
		if _, err := d.c.Delete(ctx, api.KindFolder, path, nil); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), says) {
			t.Errorf("delete %s: %v, want 409 naming %s", path, err, says)
		}
	}
	if _, err := d.c.Delete(ctx, api.KindDatacenter, "dc1", nil); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "folders") {
		t.Errorf("delete dc1 with folders: %v, want 409 naming them", err)
	}
	if got := folderPaths(t, d.c); len(got) != 2 {
		t.Fatalf("folders after refused deletes: %v", got)
	}
	d.move("web1", "/")
	d.run(d.c.Delete(ctx, api.KindFolder, "/web/prod", nil))
	d.run(d.c.Delete(ctx, api.KindFolder, "/web", nil))
	if got := folderPaths(t, d.c); len(got) != 0 {
		t.Fatalf("folders left: %v", got)
	}
	d.folder("/web", false) // the name is free again
}

// Bad folder requests are refused with a 4xx that says why, and change
// nothing.
func TestFolderBadInputChangesNothing(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	tok := adminToken(t, d)
	d.folder("/web", false)
	d.run(d.c.Create(ctx, api.KindDatacenter, api.DatacenterCreateRequest{Name: "dc2"}))
	d.run(d.c.Create(ctx, api.KindFolder, api.FolderCreateRequest{Path: "/other", Datacenter: "dc2"}))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web"}))
	deep := strings.Repeat("/a", api.MaxFolderDepth+1)
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		says                     string
	}{
		{"no parent", "POST", "/api/v1/folders", `{"path":"/nope/x","datacenter":"dc1"}`, 404, "/nope not found"},
		{"twice", "POST", "/api/v1/folders", `{"path":"/web","datacenter":"dc1"}`, 409, "already exists"},
		{"relative", "POST", "/api/v1/folders", `{"path":"web2","datacenter":"dc1"}`, 400, "must start with /"},
		{"the top", "POST", "/api/v1/folders", `{"path":"/","datacenter":"dc1"}`, 400, "top level"},
		{"empty", "POST", "/api/v1/folders", `{"path":"","datacenter":"dc1"}`, 400, "must start with /"},
		{"empty name", "POST", "/api/v1/folders", `{"path":"/web//x","datacenter":"dc1"}`, 400, "empty"},
		{"trailing slash", "POST", "/api/v1/folders", `{"path":"/web/","datacenter":"dc1"}`, 400, "empty"},
		{"control character", "POST", "/api/v1/folders", `{"path":"/w\u001b[2Jx","datacenter":"dc1"}`, 400, "invalid character"},
		{"described badly", "POST", "/api/v1/folders", `{"path":"/x","datacenter":"dc1","description":"a\u001bb"}`, 400, "control character"},
		{"too deep", "POST", "/api/v1/folders", `{"path":"` + deep + `","datacenter":"dc1","parents":true}`, 400, "deep"},
		{"no datacenter", "POST", "/api/v1/folders", `{"path":"/x"}`, 400, "say which"},
		{"rename with a slash", "PATCH", "/api/v1/folders/%2Fweb", `{"name":"a/b"}`, 400, "invalid character"},
		{"rename to nothing", "PATCH", "/api/v1/folders/%2Fweb", `{"name":""}`, 400, "empty"},
		{"unknown folder", "PATCH", "/api/v1/folders/%2Fnope", `{"name":"x"}`, 404, "not found"},
		{"vm in no such folder", "POST", "/api/v1/vms", `{"name":"v2","cpus":1,"memory":"64MiB","folder":"/nope"}`, 404, "/nope not found"},
		{"vm in another datacenter's folder", "POST", "/api/v1/vms", `{"name":"v2","cpus":1,"memory":"64MiB","folder":"dc2:/other"}`, 400, "datacenter dc2"},
		{"move nowhere", "POST", "/api/v1/vms/web1/move", `{}`, 400, "give the folder"},
		{"move to no such folder", "POST", "/api/v1/vms/web1/move", `{"folder":"/nope"}`, 404, "not found"},
		{"move across datacenters", "POST", "/api/v1/vms/web1/move", `{"folder":"dc2:/other"}`, 400, "datacenter dc2"},
		{"move where it is", "POST", "/api/v1/vms/web1/move", `{"folder":"/web"}`, 409, "already in /web"},
	} {
		code, body := rawCall(t, d, c.method, c.path, c.body, tok)
		if code != c.status || !strings.Contains(body, c.says) {
			t.Errorf("%s: %d %s; want %d saying %q", c.name, code, body, c.status, c.says)
		}
	}
	if got := folderPaths(t, d.c); !slices.Equal(got, []string{"/other", "/web"}) {
		t.Errorf("folders after bad requests: %v", got)
	}
	if f := d.vm("web1").Spec.Folder.Name; f != "/web" || vmCount(t, d) != 1 {
		t.Errorf("after bad requests web1 is in %q, and there are %d vms", f, vmCount(t, d))
	}
	for _, p := range []string{"/web/stage", "/web/prod"} {
		d.run(d.c.Create(ctx, api.KindFolder, api.FolderCreateRequest{Path: p, Datacenter: "dc1"}))
	}
	if _, err := d.c.Update(ctx, api.KindFolder, "/web/stage", api.FolderUpdateRequest{Name: ptr("prod")}, 0); !errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), "/web already has") {
		t.Errorf("rename /web/stage onto its sibling prod: %v, want 409", err)
	}
}

// A permission on a folder is one on the VMs in it, and with propagate
// on those of its subfolders: VirtualMachineUser on /web powers web's
// VMs and sees only them; it makes no VM, touches no host, and powers
// no other VM.
func TestPermissionOnAFolderCoversItsVMs(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.folder("/web/inner", true)
	d.folder("/db", false)
	for name, folder := range map[string]string{"web1": "/web", "web2": "/web/inner", "db1": "/db", "top1": ""} {
		d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: name, CPUs: 1, Memory: api.MustSize("64MiB"), Folder: folder}))
	}
	p := d.permit("folders:/web", "alice", "VirtualMachineUser", true)
	alice := userClient(t, d, "alice")
	perms := mustList[*api.Permission](t, d.c, api.KindPermission)
	if i := slices.IndexFunc(perms, func(x *api.Permission) bool { return x.Metadata.Name == p }); i < 0 || perms[i].Spec.Object.Name != "/web" {
		t.Fatalf("the permission on folders:/web is not named by the folder's path: %+v", perms)
	}

	if got := vmNames(t, alice); !slices.Equal(got, []string{"web1", "web2"}) {
		t.Fatalf("alice, VirtualMachineUser on /web, lists vms %v", got)
	}
	if got := folderPaths(t, alice); !slices.Equal(got, []string{"/web", "/web/inner"}) {
		t.Fatalf("alice lists folders %v", got)
	}
	for _, vm := range []string{"web1", "web2"} {
		if err := power(alice, vm, api.ActionStart); err != nil {
			t.Fatalf("alice starts %s under /web: %v", vm, err)
		}
	}
	// What she may not even see does not exist for her.
	for _, vm := range []string{"db1", "top1"} {
		if err := power(alice, vm, api.ActionStart); !errors.Is(err, api.ErrNotFound) {
			t.Errorf("alice starts %s outside /web: %v, want 404", vm, err)
		}
		if st := d.vm(vm).Status.PowerState; st != api.PowerOff {
			t.Errorf("%s is %s after alice's refused start", vm, st)
		}
	}
	if _, err := alice.CreateVM(ctx, api.VMCreateRequest{Name: "new", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web"}); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("alice creates a vm in /web: %v, want 403", err)
	}
	if _, err := alice.Update(ctx, api.KindHost, "host-1", api.HostUpdateRequest{Labels: map[string]string{"a": "b"}}, 0); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("alice changes host-1, which she may not see: %v, want 404", err)
	}
	h, err := client.Get[*api.Host](ctx, d.c, api.KindHost, "host-1")
	if err != nil || len(h.Metadata.Labels) != 0 {
		t.Errorf("host-1 after alice's refused change: %v %v", h.Metadata.Labels, err)
	}
	if _, err := alice.Action(ctx, api.KindVM, "web1", "move", api.VMMoveRequest{Folder: "/web/inner"}); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("alice, without VirtualMachine.Inventory.Move, moves web1: %v, want 403", err)
	}
	if _, err := alice.Update(ctx, api.KindFolder, "/web", api.FolderUpdateRequest{Name: ptr("x")}, 0); !errors.Is(err, api.ErrForbidden) {
		t.Errorf("alice renames /web: %v, want 403", err)
	}
}

// Moving a VM takes VirtualMachine.Inventory.Move on the VM and on where
// it goes, as in vSphere.
func TestMoveNeedsTheRightOnBothEnds(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.folder("/web/inner", true)
	d.folder("/db", false)
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web"}))
	d.run(d.c.Create(ctx, api.KindRole, api.RoleCreateRequest{Name: "Mover", Privileges: []string{"System.Read", "VirtualMachine.Inventory.Move"}}))
	d.permit("folders:/web", "bob", "Mover", true)
	bob := userClient(t, d, "bob")
	d.run(bob.Action(ctx, api.KindVM, "web1", "move", api.VMMoveRequest{Folder: "/web/inner"}))
	if _, err := bob.Action(ctx, api.KindVM, "web1", "move", api.VMMoveRequest{Folder: "/db"}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("bob moves web1 to /db, which he may not see: %v, want 404", err)
	}
	d.permit("folders:/db", "bob", "ReadOnly", false)
	if _, err := bob.Action(ctx, api.KindVM, "web1", "move", api.VMMoveRequest{Folder: "/db"}); !errors.Is(err, api.ErrForbidden) || !strings.Contains(err.Error(), "Inventory.Move") {
		t.Fatalf("bob moves web1 to /db, where he may only read: %v, want 403 naming the privilege", err)
	}
	if _, err := bob.Action(ctx, api.KindVM, "web1", "move", api.VMMoveRequest{Folder: "/"}); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("bob moves web1 to the top, without rights on dc1: %v, want 404", err)
	}
	if f := d.vm("web1").Spec.Folder.Name; f != "/web/inner" {
		t.Fatalf("web1 is in %s after refused moves", f)
	}
	d.permit("folders:/db", "carol", "Mover", false)
	d.permit("vms:web1", "carol", "Mover", false)
	d.run(userClient(t, d, "carol").Action(ctx, api.KindVM, "web1", "move", api.VMMoveRequest{Folder: "/db"}))
	if f := d.vm("web1").Spec.Folder.Name; f != "/db" {
		t.Fatalf("web1 is in %s after carol's move", f)
	}
}

// A clone goes in its source's folder, or the one it is given; a VM made
// from a template too.
func TestClonesGoInAFolder(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	d.folder("/web", false)
	d.folder("/db", false)
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "web1", CPUs: 1, Memory: api.MustSize("64MiB"), Folder: "/web"}))
	d.run(d.c.Clone(ctx, "web1", api.CloneRequest{Name: "web2"}))
	d.run(d.c.Clone(ctx, "web1", api.CloneRequest{Name: "db2", Folder: "/db"}))
	d.run(d.c.MarkTemplate(ctx, "web1", true))
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "db3", FromTemplate: "web1", Folder: "/db"}))
	for vm, want := range map[string]string{"web2": "/web", "db2": "/db", "db3": "/db"} {
		if got := d.vm(vm).Spec.Folder.Name; got != want {
			t.Errorf("%s is in %q, want %s", vm, got, want)
		}
	}
	if _, err := d.c.Clone(ctx, "web2", api.CloneRequest{Name: "x", Folder: "/nope"}); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("clone into no such folder: %v, want 404", err)
	}
}
