package server

import (
	"io"
	"net/http"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/server/idempotency"
	"github.com/vdc-project/vdc/internal/server/openapi"
)

// route is one API call: how it is served and how it is documented. The
// same table builds the router and the OpenAPI document, so the two cannot
// drift apart.
type route struct {
	method, path string
	handler      handlerFunc
	summary      string
	body         any // the request body's type (a zero value), if any
	reply        any // the success answer's type
	status       int // success status (default 200)
	query        []param
	public       bool // authenticated otherwise than by bearer token
	stream       bool // text/event-stream
	// idempotent calls take an Idempotency-Key header (see package
	// idempotency); set from the table by idempotency.Takes.
	idempotent bool
}

// param is one query parameter. Those not in a route's table are refused.
type param struct {
	name, doc string
	values    []string // the allowed values, when they are a fixed set
	list      bool     // a comma-separated list of values
}

// inventoryTypes describes the kinds with plain create/update calls.
var inventoryTypes = []struct {
	kind                string
	obj, create, update any
	createFn, updateFn  func(*Server) handlerFunc
}{
	{api.KindDatacenter, api.Datacenter{}, api.DatacenterCreateRequest{}, api.DatacenterUpdateRequest{},
		func(s *Server) handlerFunc { return s.createDatacenter }, func(s *Server) handlerFunc { return s.updateDatacenter }},
	{api.KindCluster, api.Cluster{}, api.ClusterCreateRequest{}, api.ClusterUpdateRequest{},
		func(s *Server) handlerFunc { return s.createCluster }, func(s *Server) handlerFunc { return s.updateCluster }},
	{api.KindDatastore, api.Datastore{}, api.DatastoreCreateRequest{}, api.DatastoreUpdateRequest{},
		func(s *Server) handlerFunc { return s.createDatastore }, func(s *Server) handlerFunc { return s.updateDatastore }},
	{api.KindPortGroup, api.PortGroup{}, api.PortGroupCreateRequest{}, api.PortGroupUpdateRequest{},
		func(s *Server) handlerFunc { return s.createPortGroup }, func(s *Server) handlerFunc { return s.updatePortGroup }},
	{api.KindSwitch, api.Switch{}, api.SwitchCreateRequest{}, api.SwitchUpdateRequest{},
		func(s *Server) handlerFunc { return s.createSwitch }, func(s *Server) handlerFunc { return s.updateSwitch }},
}

var (
	byDatacenter = param{name: "datacenter", doc: "only objects of this datacenter (name or ID)"}
	powerStates  = []string{api.PowerOn, api.PowerOff, api.PowerSuspended, api.PowerUnknown}
	taskStates   = []string{api.TaskQueued, api.TaskRunning, "active", api.TaskSucceeded, api.TaskFailed, api.TaskCanceled}
	eventTypes   = []string{api.EventTask, api.EventVMPower, api.EventHostConnection, api.EventHostHA, api.EventCreated, api.EventDeleted, api.EventDatastoreAlarm}
	objectKinds  = []string{api.KindDatacenter, api.KindCluster, api.KindHost, api.KindDatastore, api.KindPortGroup, api.KindSwitch, api.KindVM, api.KindTask, api.KindImage, api.KindRole, api.KindPermission, api.KindFolder}
	folderPath   = "/api/v1/folders/{name}"
	ifMatchNote  = " Send If-Match with the revision you read to change only that version (409 otherwise)."
)

func (s *Server) apiRoutes() []route {
	task := api.Task{}
	rs := []route{
		{method: "GET", path: "/api/v1/version", handler: s.getVersion, summary: "Server version and leader", reply: api.Version{}},
		{method: "GET", path: "/api/v1/openapi.json", handler: s.getOpenAPI, summary: "This API's OpenAPI 3 document", reply: map[string]any{}},
		{method: "POST", path: "/api/v1/join-tokens", handler: s.createJoinToken, summary: "Create a token for new hosts to join with",
			body: api.JoinTokenRequest{}, reply: api.JoinToken{}, status: http.StatusCreated},
		{method: "GET", path: "/api/v1/tokens", handler: s.listTokens, summary: "List API tokens (without their secrets)", reply: listOf(api.Token{})},
		{method: "POST", path: "/api/v1/tokens", handler: s.createToken, summary: "Create an API token; the answer holds its secret, shown this once",
			body: api.TokenCreateRequest{}, reply: api.Token{}, status: http.StatusCreated},
		{method: "POST", path: "/api/v1/tokens/rotate", handler: s.rotateToken,
			summary: "Replace the token this request came with by a new one (shown this once); the old one stops working", reply: api.Token{}, status: http.StatusCreated},
		{method: "DELETE", path: "/api/v1/tokens/{id}", handler: s.deleteToken, summary: "Delete an API token: it stops working at once", reply: api.Token{}},
		{method: "GET", path: "/api/v1/users", handler: s.listObjects(api.KindUser), summary: "List users", reply: listOf(api.User{})},
		{method: "POST", path: "/api/v1/users", handler: s.createUser, summary: "Create a user with a password (stored hashed, argon2id)",
			body: api.UserCreateRequest{}, reply: task},
		{method: "GET", path: "/api/v1/users/{name}", handler: s.getObject(api.KindUser), summary: "Read a user", reply: api.User{}},
		{method: "PATCH", path: "/api/v1/users/{name}", handler: s.updateUser,
			summary: "Change a user: disable it (its sessions and tokens stop at once), or its password (its sessions and tokens end); users may change their own password",
			body:    api.UserUpdateRequest{}, reply: task},
		{method: "DELETE", path: "/api/v1/users/{name}", handler: s.deleteUser, summary: "Delete a user, its password and its tokens", reply: task},
		{method: "GET", path: "/api/v1/groups", handler: s.listObjects(api.KindGroup), summary: "List groups", reply: listOf(api.Group{})},
		{method: "POST", path: "/api/v1/groups", handler: s.createGroup, summary: "Create a group of users", body: api.GroupCreateRequest{}, reply: task},
		{method: "GET", path: "/api/v1/groups/{name}", handler: s.getObject(api.KindGroup), summary: "Read a group", reply: api.Group{}},
		{method: "PATCH", path: "/api/v1/groups/{name}", handler: s.updateGroup, summary: "Add or remove members", body: api.GroupUpdateRequest{}, reply: task},
		{method: "DELETE", path: "/api/v1/groups/{name}", handler: s.deleteGroup, summary: "Delete a group no permission names", reply: task},
		{method: "POST", path: "/api/v1/sessions", handler: s.login, summary: "Log in with a user's password: the answer holds a session token (shown once) that expires when unused",
			body: api.LoginRequest{}, reply: api.Session{}, status: http.StatusCreated, public: true},
		{method: "GET", path: "/api/v1/sessions", handler: s.listSessions, summary: "List the caller's sessions", reply: listOf(api.Token{})},
		{method: "DELETE", path: "/api/v1/sessions/{id}", handler: s.deleteSession, summary: "End a session (the caller's, or anyone's with Sessions.TerminateSession)", reply: api.Token{}},
		{method: "GET", path: "/api/v1/audit", handler: s.listAudit, summary: "Read the audit trail, newest first", reply: listOf(api.AuditRecord{}),
			query: []param{{name: "user", doc: "only this user's requests"}, {name: "object", doc: "only those on this object (KIND:NAME)"},
				{name: "result", doc: "only those with this result", values: []string{api.AuditOK, api.AuditRefused, api.AuditFailed}},
				{name: "since", doc: "only those since this long ago (1h) or this time (RFC 3339)"}, {name: "limit", doc: "at most this many (default 1000)"}}},
		{method: "GET", path: "/api/v1/roles", handler: s.listRoles, summary: "List roles: the built-in ones, then custom ones", reply: listOf(api.Role{})},
		{method: "GET", path: "/api/v1/roles/{name}", handler: s.getRole, summary: "Read a role and its privileges", reply: api.Role{}},
		{method: "POST", path: "/api/v1/roles", handler: s.createRole, summary: "Create a custom role: a set of privileges", body: api.RoleCreateRequest{}, reply: task},
		{method: "DELETE", path: "/api/v1/roles/{name}", handler: s.deleteRole, summary: "Delete a custom role no permission uses", reply: task},
		{method: "GET", path: "/api/v1/permissions", handler: s.listPermissions, summary: "List permissions (those on objects the caller may see)",
			reply: listOf(api.Permission{})},
		{method: "POST", path: "/api/v1/permissions", handler: s.createPermission,
			summary: "Give a user or group a role on an object (Authorization.ModifyPermissions on it); it takes effect at once",
			body:    api.PermissionCreateRequest{}, reply: task},
		{method: "DELETE", path: "/api/v1/permissions/{name}", handler: s.deletePermission, summary: "Remove a permission; it stops applying at once", reply: task},
	}
	for _, it := range inventoryTypes {
		one, name := api.Singular(it.kind), "/api/v1/"+it.kind+"/{name}"
		rs = append(rs,
			route{method: "GET", path: "/api/v1/" + it.kind, handler: s.listObjects(it.kind), summary: "List " + it.kind, reply: listOf(it.obj), query: []param{byDatacenter}},
			route{method: "POST", path: "/api/v1/" + it.kind, handler: it.createFn(s), summary: "Create a " + one, body: it.create, reply: task},
			route{method: "GET", path: name, handler: s.getObject(it.kind), summary: "Read a " + one + " by name or ID", reply: it.obj},
			route{method: "PATCH", path: name, handler: it.updateFn(s), summary: "Change a " + one + "." + ifMatchNote, body: it.update, reply: task},
			route{method: "DELETE", path: name, handler: s.deleteObject(it.kind), summary: "Delete a " + one + " nothing depends on", reply: task},
		)
	}
	rs = append(rs,
		route{method: "GET", path: "/api/v1/hosts", handler: s.listHosts, summary: "List hosts", reply: listOf(api.Host{}),
			query: []param{{name: "cluster", doc: "only hosts of this cluster (name or ID)"}}},
		route{method: "GET", path: "/api/v1/hosts/{name}", handler: s.getObject(api.KindHost), summary: "Read a host", reply: api.Host{}},
		route{method: "PATCH", path: "/api/v1/hosts/{name}", handler: s.updateHost, summary: "Change a host." + ifMatchNote, body: api.HostUpdateRequest{}, reply: task},
		route{method: "DELETE", path: "/api/v1/hosts/{name}", handler: s.deleteObject(api.KindHost), summary: "Remove a host that has no VMs", reply: task},
		route{method: "POST", path: "/api/v1/hosts/{name}/replace", handler: s.replaceHost,
			summary: "Revoke a host's certificate at once and make a one-use token that joins a machine as this host (same ID, same VMs)",
			body:    api.HostReplaceRequest{}, reply: api.HostReplaceResponse{}},
		route{method: "POST", path: "/api/v1/hosts/{name}/maintenance", handler: s.hostMaintenance, summary: "Enter or exit maintenance mode",
			body: api.MaintenanceRequest{}, reply: task},

		route{method: "GET", path: "/api/v1/vms", handler: s.listVMs, summary: "List VMs", reply: listOf(api.VM{}),
			query: []param{{name: "host", doc: "only VMs on this host (name or ID)"}, {name: "cluster", doc: "only VMs of this cluster (name or ID)"},
				{name: "power", doc: "only VMs in this power state", values: powerStates},
				{name: "folder", doc: "only VMs directly in this folder (path, name or ID; / for the top level)"}}},
		route{method: "POST", path: "/api/v1/vms", handler: s.createVM, summary: "Create a VM (placed on a host with room unless one is named)",
			body: api.VMCreateRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "GET", path: "/api/v1/vms/{name}", handler: s.getObject(api.KindVM), summary: "Read a VM", reply: api.VM{}},
		route{method: "PATCH", path: "/api/v1/vms/{name}", handler: s.updateVM, summary: "Change a VM (CPUs and memory while off)." + ifMatchNote,
			body: api.VMUpdateRequest{}, reply: task},
		route{method: "DELETE", path: "/api/v1/vms/{name}", handler: s.deleteVM, summary: "Delete a VM", reply: task, status: http.StatusAccepted,
			query: []param{{name: "force", doc: "true to power off and delete a running VM"}}},
		route{method: "POST", path: "/api/v1/vms/{name}/power", handler: s.powerVM, summary: "Start, stop, reset, suspend or resume a VM",
			body: api.PowerRequest{}, reply: task, status: http.StatusAccepted},

		route{method: "POST", path: "/api/v1/vms/{name}/move", handler: s.moveVM,
			summary: "Move a VM to another folder of its datacenter (/ for the top level); needs VirtualMachine.Inventory.Move on the VM and on the folder",
			body:    api.VMMoveRequest{}, reply: task},

		route{method: "GET", path: "/api/v1/folders", handler: s.listObjects(api.KindFolder), summary: "List VM folders", reply: listOf(api.Folder{}),
			query: []param{byDatacenter}},
		route{method: "POST", path: "/api/v1/folders", handler: s.createFolder,
			summary: "Create a VM folder at a path (its parent must exist, or set parents)", body: api.FolderCreateRequest{}, reply: task},
		route{method: "GET", path: folderPath, handler: s.getObject(api.KindFolder), summary: "Read a VM folder by ID, path (URL-escaped: %2Fweb%2Fprod) or name", reply: api.Folder{}},
		route{method: "PATCH", path: folderPath, handler: s.updateFolder, summary: "Rename, relabel or describe a VM folder." + ifMatchNote,
			body: api.FolderUpdateRequest{}, reply: task},
		route{method: "DELETE", path: folderPath, handler: s.deleteObject(api.KindFolder), summary: "Delete an empty VM folder (no VMs, no folders)", reply: task},

		route{method: "POST", path: "/api/v1/vms/{name}/migrate", handler: s.migrateVM,
			summary: "Move a VM to another host and/or datastore, live when it runs", body: api.MigrateRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "POST", path: "/api/v1/vms/{name}/exec", handler: s.execVM, summary: "Run a program in the guest through its agent and return its output and exit code",
			body: api.ExecRequest{}, reply: api.ExecResult{}},
		route{method: "GET", path: "/api/v1/vms/{name}/console/log", handler: s.consoleLog, summary: "The recent output of the VM's serial console (text)",
			reply: "", query: []param{{name: "bytes", doc: "at most this many bytes, from the end (default 64 KiB)"}}},
		route{method: "GET", path: "/api/v1/vms/{name}/console", handler: s.console, summary: "Attach to the VM's serial console (websocket, binary messages both ways)", reply: ""},
		route{method: "GET", path: "/api/v1/vms/{name}/vnc", handler: s.vnc, summary: "Attach to the VM's VNC display (websocket, binary messages carrying RFB both ways); QEMU serves it on a unix socket of the host only", reply: ""},

		route{method: "GET", path: "/api/v1/vms/{name}/snapshots", handler: s.listSnapshots, summary: "List a VM's snapshots (a tree: each names its parent)",
			reply: listOf(api.VMSnapshot{})},
		route{method: "POST", path: "/api/v1/vms/{name}/snapshots", handler: s.createSnapshot,
			summary: "Snapshot a VM, running or not (external qcow2 overlays; with memory, revert resumes it)", body: api.SnapshotCreateRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "POST", path: "/api/v1/vms/{name}/snapshots/{snapshot}/revert", handler: s.revertSnapshot,
			summary: "Put a VM back to a snapshot", reply: task, status: http.StatusAccepted},
		route{method: "DELETE", path: "/api/v1/vms/{name}/snapshots/{snapshot}", handler: s.deleteSnapshot,
			summary: "Delete a snapshot: its data merges into what depends on it (live when the VM runs)", reply: task, status: http.StatusAccepted},
		route{method: "POST", path: "/api/v1/vms/{name}/clone", handler: s.cloneVM,
			summary: "Clone a VM, a snapshot of it, or a template: a full copy, or a linked clone (a thin overlay)", body: api.CloneRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "POST", path: "/api/v1/vms/{name}/mark-template", handler: s.markTemplate(true), summary: "Make a powered-off VM a template", reply: task},
		route{method: "POST", path: "/api/v1/vms/{name}/unmark-template", handler: s.markTemplate(false), summary: "Make a template a VM again (no linked clones may depend on it)", reply: task},
		route{method: "GET", path: "/api/v1/templates", handler: s.listTemplates, summary: "List templates", reply: listOf(api.VM{})},
		route{method: "POST", path: "/api/v1/vms/{name}/disks", handler: s.addDisk, summary: "Add a disk (hot-plugged when the VM runs)",
			body: api.DiskAddRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "PATCH", path: "/api/v1/vms/{name}/disks/{disk}", handler: s.resizeDisk, summary: "Grow a disk (live when the VM runs)",
			body: api.DiskResizeRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "DELETE", path: "/api/v1/vms/{name}/disks/{disk}", handler: s.removeDisk, summary: "Remove a disk (unplugged when the VM runs)",
			reply: task, status: http.StatusAccepted},
		route{method: "POST", path: "/api/v1/vms/{name}/nics", handler: s.addNIC, summary: "Add a NIC (hot-plugged when the VM runs); its name is the next free nicN",
			body: api.NICAddRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "PATCH", path: "/api/v1/vms/{name}/nics/{nic}", handler: s.updateNIC, summary: "Move a NIC to another port group (live within one kind of switch), or set its link up or down (live)",
			body: api.NICUpdateRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "DELETE", path: "/api/v1/vms/{name}/nics/{nic}", handler: s.removeNIC, summary: "Remove a NIC (unplugged when the VM runs)",
			reply: task, status: http.StatusAccepted},

		route{method: "POST", path: "/api/v1/images/import", handler: s.importImage,
			summary: "Import a disk image (qcow2 or raw cloud image) from a URL or a file in a datastore", body: api.ImageImportRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "GET", path: "/api/v1/images", handler: s.listObjects(api.KindImage), summary: "List images", reply: listOf(api.Image{})},
		route{method: "POST", path: "/api/v1/images", handler: s.createImage, summary: "Register an image; then upload its files", body: api.ImageCreateRequest{}, reply: task},
		route{method: "GET", path: "/api/v1/images/{name}", handler: s.getObject(api.KindImage), summary: "Read an image", reply: api.Image{}},
		route{method: "PUT", path: "/api/v1/images/{name}/files/{file}", handler: s.uploadImageFile,
			summary: "Upload one of an image's files (kernel, initrd, or disk); the body is the file", reply: task},
		route{method: "DELETE", path: "/api/v1/images/{name}", handler: s.deleteImage, summary: "Delete an image no VM uses, with its files", reply: task},

		route{method: "POST", path: "/api/v1/uploads", handler: s.createUpload, summary: "Make an upload: a staging folder on a datastore for the files of an import",
			body: api.UploadRequest{}, reply: api.Upload{}, status: http.StatusCreated},
		route{method: "PUT", path: "/api/v1/uploads/{id}/files", handler: s.uploadFile, summary: "Upload one file of a package (or a whole OVA, or a disk); the body is the file",
			reply: api.UploadedFile{}, query: []param{{name: "name", doc: "the file's name (its path in the package)"}}},
		route{method: "DELETE", path: "/api/v1/uploads/{id}", handler: s.deleteStaging, summary: "Delete an upload and its files", reply: ""},
		route{method: "POST", path: "/api/v1/imports", handler: s.createImport,
			summary: "Import VMs from an OVF package (OVA, OVF) or a foreign disk, uploaded or at a URL; with dryRun, answer with the plan (ImportPlan) and change nothing",
			body:    api.ImportRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "POST", path: "/api/v1/vms/{name}/export", handler: s.exportVM, summary: "Export a VM that is off as an OVF package (streamOptimized VMDKs, SHA-256 manifest)",
			body: api.ExportRequest{}, reply: task, status: http.StatusAccepted},
		route{method: "GET", path: "/api/v1/exports/{id}/ova", handler: s.downloadExportOVA, summary: "Download a finished export as one OVA (tar)", reply: ""},
		route{method: "GET", path: "/api/v1/exports/{id}/files", handler: s.downloadExportFile, summary: "Download one file of a finished export",
			reply: "", query: []param{{name: "name", doc: "the file's name"}}},
		route{method: "DELETE", path: "/api/v1/exports/{id}", handler: s.deleteStaging, summary: "Delete an export's files", reply: ""},

		route{method: "GET", path: "/api/v1/tasks", handler: s.listTasks, summary: "List tasks, newest first", reply: listOf(task),
			query: []param{{name: "state", doc: "only tasks in this state (active: queued or running)", values: taskStates},
				{name: "target", doc: "name or ID of the target object"}, {name: "limit", doc: "at most this many"}}},
		route{method: "GET", path: "/api/v1/tasks/{id}", handler: s.getTask, summary: "Read a task, optionally waiting for it to change", reply: task,
			query: []param{{name: "wait", doc: "wait up to this long (e.g. 30s, at most 5m) for a change"}, {name: "after", doc: "the revision the caller has seen"},
				{name: "done", doc: "true to wait for the end only"}}},
		route{method: "POST", path: "/api/v1/tasks/{id}/cancel", handler: s.cancelTask, summary: "Cancel a queued task, or a running one that can stop (migrations, maintenance)",
			reply: task, status: http.StatusAccepted},
		route{method: "GET", path: "/api/v1/events", handler: s.streamEvents, summary: "Stream events (server-sent events); resume with Last-Event-ID",
			reply: api.Event{}, stream: true, query: []param{{name: "types", doc: "comma-separated event types", values: eventTypes, list: true},
				{name: "kind", doc: "object kind", values: objectKinds}, {name: "id", doc: "object or task target ID"}, {name: "after", doc: "resume after this sequence number"}}},

		route{method: "POST", path: "/api/v1/agent/join", handler: s.agentJoin,
			summary: "A new host joins with a join token and a CSR (a token from host replace: the host it was made for joins again)",
			body:    api.JoinRequest{}, reply: api.JoinResponse{}, public: true},
		route{method: "POST", path: "/api/v1/agent/renew", handler: s.agentRenew,
			summary: "A host trades its current certificate (mutual TLS) for a new one; the old one is refused from the host's first call with the new one",
			body:    api.RenewRequest{}, reply: api.RenewResponse{}, public: true},
		route{method: "POST", path: "/api/v1/agent/heartbeat", handler: s.agentHeartbeat, summary: "A host reports (host certificate required)",
			body: api.Heartbeat{}, reply: api.HeartbeatResponse{}, public: true},
	)
	for i := range rs {
		_, task := rs[i].reply.(api.Task)
		rs[i].idempotent = idempotency.Takes(rs[i].method, rs[i].path, task)
	}
	return rs
}

// handlerFunc is an API call's handler: it writes its answer, or returns
// the error that serve answers with (api.ErrorFrom: the status and the
// error body), the one place errors become HTTP answers.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// serve answers a handler's error.
func serve(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			fail(w, err)
		}
	}
}

// listOf stands for api.List of a type in the document.
func listOf(item any) any { return openapi.ListOf{Item: item} }

func (s *Server) routes() http.Handler {
	authed := http.NewServeMux()
	root := http.NewServeMux()
	for _, r := range s.apiRoutes() {
		h := r.handler
		if r.idempotent {
			h = s.idem.Wrap(h)
		} else {
			h = idempotency.Refuse(r.method, r.path, h)
		}
		if !r.public {
			h = s.checkAccess(routeAccess[r.method+" "+r.path], h)
		}
		h = noteCall(r.method+" "+r.path, routeAccess[r.method+" "+r.path].priv, h)
		mux, hf := authed, checkQuery(r, serve(h))
		if r.public {
			// These authenticate in the handler (a join token, a host's
			// current certificate), which then trusts the connection.
			mux = root
		}
		mux.HandleFunc(r.method+" "+r.path, hf)
	}
	authed.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		fail(w, api.Errorf(api.ErrNotFound, "no such API call: %s %s", r.Method, r.URL.Path))
	})
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	root.Handle("/", s.requireToken(authed))
	return s.auditRequests(s.answerFaults(root))
}

// answerFaults loses the answers that tests ask to lose (see
// DropAnswersForTest): the request is served, then its connection cut.
func (s *Server) answerFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drop := s.dropAnswer.Load()
		if drop == nil || !(*drop)(r.Method, r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(&idempotency.Held{}, r)
		panic(http.ErrAbortHandler)
	})
}
