package server

import (
	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/authz"
)

// access is what an API call needs: a privilege, and the object it is
// checked on.
type access struct {
	priv authz.Privilege
	// on is where priv is checked: onRoot (the whole system), onList (the
	// answer holds only what the caller may read), onBody (the handler
	// checks it on the object the request names), onAny (no privilege:
	// any authenticated caller), onPublic (not a user's call: the handler
	// authenticates a join token or a host certificate), or the kind of
	// the object the path names ({name}, or {id} for tasks).
	on string
	// byAction, for calls whose body names what they do (power), is the
	// privilege of each action; priv is then the one that lets a caller
	// ask at all.
	byAction map[string]authz.Privilege
	// self: callers need no privilege for their own object (their
	// password, their session); the handler tells.
	self bool
}

const (
	onRoot   = "root"
	onList   = "list"
	onAny    = "any"
	onPublic = "public"
	onBody   = "body"
)

// routeAccess is the one table of what every API call needs, by its
// route ("METHOD PATH" as in the route table). TestEveryRouteNeedsAPrivilege
// walks the route table against it; the OpenAPI document lists it.
// Creating a VM is checked where it goes (admitVM); creating other
// objects needs the privilege on the root for now. Moving a VM needs VirtualMachine.Inventory.Move on the VM
// here and on where it goes, which the handler checks.
var routeAccess = func() map[string]access {
	m := map[string]access{
		"GET /api/v1/version":                   {on: onAny},
		"GET /api/v1/openapi.json":              {on: onAny},
		"POST /api/v1/join-tokens":              {priv: authz.HostAdd, on: onRoot},
		"GET /api/v1/tokens":                    {priv: authz.ManageSessions, on: onRoot},
		"POST /api/v1/tokens":                   {priv: authz.ManageSessions, on: onRoot},
		"DELETE /api/v1/tokens/{id}":            {priv: authz.ManageSessions, on: onRoot},
		"POST /api/v1/tokens/rotate":            {on: onAny},
		"GET /api/v1/audit":                     {priv: authz.ReadAudit, on: onRoot},
		"GET /api/v1/users":                     {priv: authz.SystemRead, on: onRoot},
		"POST /api/v1/users":                    {priv: authz.ModifyUsers, on: onRoot},
		"GET /api/v1/users/{name}":              {priv: authz.SystemRead, on: onRoot},
		"PATCH /api/v1/users/{name}":            {priv: authz.ModifyUsers, on: onBody, self: true},
		"DELETE /api/v1/users/{name}":           {priv: authz.ModifyUsers, on: onRoot},
		"GET /api/v1/groups":                    {priv: authz.SystemRead, on: onRoot},
		"POST /api/v1/groups":                   {priv: authz.ModifyUsers, on: onRoot},
		"GET /api/v1/groups/{name}":             {priv: authz.SystemRead, on: onRoot},
		"PATCH /api/v1/groups/{name}":           {priv: authz.ModifyUsers, on: onRoot},
		"DELETE /api/v1/groups/{name}":          {priv: authz.ModifyUsers, on: onRoot},
		"POST /api/v1/sessions":                 {on: onPublic},
		"GET /api/v1/sessions":                  {on: onAny},
		"DELETE /api/v1/sessions/{id}":          {priv: authz.ManageSessions, on: onBody, self: true},
		"GET /api/v1/roles":                     {on: onAny},
		"GET /api/v1/roles/{name}":              {on: onAny},
		"POST /api/v1/roles":                    {priv: authz.ModifyRoles, on: onRoot},
		"DELETE /api/v1/roles/{name}":           {priv: authz.ModifyRoles, on: onRoot},
		"GET /api/v1/permissions":               {priv: authz.SystemRead, on: onList},
		"POST /api/v1/permissions":              {priv: authz.ModifyPermissions, on: onBody},
		"DELETE /api/v1/permissions/{name}":     {priv: authz.ModifyPermissions, on: onBody},
		"POST /api/v1/agent/join":               {on: onPublic},
		"POST /api/v1/agent/renew":              {on: onPublic},
		"POST /api/v1/agent/heartbeat":          {on: onPublic},
		"GET /api/v1/hosts":                     {priv: authz.SystemRead, on: onList},
		"GET /api/v1/hosts/{name}":              {priv: authz.SystemRead, on: api.KindHost},
		"PATCH /api/v1/hosts/{name}":            {priv: authz.HostConfig, on: api.KindHost},
		"DELETE /api/v1/hosts/{name}":           {priv: authz.HostRemove, on: api.KindHost},
		"POST /api/v1/hosts/{name}/replace":     {priv: authz.HostAdd, on: api.KindHost},
		"POST /api/v1/hosts/{name}/maintenance": {priv: authz.HostMaintenance, on: api.KindHost},

		"GET /api/v1/vms":           {priv: authz.SystemRead, on: onList},
		"POST /api/v1/vms":          {priv: authz.VMCreate, on: onBody},
		"GET /api/v1/vms/{name}":    {priv: authz.SystemRead, on: api.KindVM},
		"PATCH /api/v1/vms/{name}":  {priv: authz.VMConfigSettings, on: api.KindVM},
		"DELETE /api/v1/vms/{name}": {priv: authz.VMDelete, on: api.KindVM},
		"POST /api/v1/vms/{name}/power": {priv: authz.SystemRead, on: api.KindVM, byAction: map[string]authz.Privilege{
			api.ActionStart: authz.VMPowerOn, api.ActionResume: authz.VMPowerOn, api.ActionStop: authz.VMPowerOff,
			api.ActionReset: authz.VMReset, api.ActionSuspend: authz.VMSuspend,
		}},
		"POST /api/v1/vms/{name}/migrate":                     {priv: authz.VMMigrateHot, on: api.KindVM},
		"POST /api/v1/vms/{name}/move":                        {priv: authz.VMMove, on: api.KindVM},
		"POST /api/v1/vms/{name}/exec":                        {priv: authz.VMGuestExec, on: api.KindVM},
		"GET /api/v1/vms/{name}/console/log":                  {priv: authz.VMConsole, on: api.KindVM},
		"GET /api/v1/vms/{name}/console":                      {priv: authz.VMConsole, on: api.KindVM},
		"GET /api/v1/vms/{name}/vnc":                          {priv: authz.VMConsole, on: api.KindVM},
		"GET /api/v1/vms/{name}/snapshots":                    {priv: authz.SystemRead, on: api.KindVM},
		"POST /api/v1/vms/{name}/snapshots":                   {priv: authz.VMSnapshotCreate, on: api.KindVM},
		"POST /api/v1/vms/{name}/snapshots/{snapshot}/revert": {priv: authz.VMSnapshotRevert, on: api.KindVM},
		"DELETE /api/v1/vms/{name}/snapshots/{snapshot}":      {priv: authz.VMSnapshotRemove, on: api.KindVM},
		"POST /api/v1/vms/{name}/clone":                       {priv: authz.VMClone, on: api.KindVM},
		"POST /api/v1/vms/{name}/mark-template":               {priv: authz.VMMarkTemplate, on: api.KindVM},
		"POST /api/v1/vms/{name}/unmark-template":             {priv: authz.VMMarkVM, on: api.KindVM},
		"GET /api/v1/templates":                               {priv: authz.SystemRead, on: onList},
		"POST /api/v1/vms/{name}/disks":                       {priv: authz.VMConfigAddDisk, on: api.KindVM},
		"PATCH /api/v1/vms/{name}/disks/{disk}":               {priv: authz.VMConfigExtendDisk, on: api.KindVM},
		"DELETE /api/v1/vms/{name}/disks/{disk}":              {priv: authz.VMConfigRemoveDisk, on: api.KindVM},
		"POST /api/v1/vms/{name}/nics":                        {priv: authz.VMConfigDevices, on: api.KindVM},
		"PATCH /api/v1/vms/{name}/nics/{nic}":                 {priv: authz.VMConfigEditDevice, on: api.KindVM},
		"DELETE /api/v1/vms/{name}/nics/{nic}":                {priv: authz.VMConfigDevices, on: api.KindVM},
		"POST /api/v1/vms/{name}/export":                      {priv: authz.VMExport, on: api.KindVM},

		"POST /api/v1/images/import":             {priv: authz.ImageAdd, on: onRoot},
		"GET /api/v1/images":                     {priv: authz.SystemRead, on: onList},
		"POST /api/v1/images":                    {priv: authz.ImageAdd, on: onRoot},
		"GET /api/v1/images/{name}":              {priv: authz.SystemRead, on: api.KindImage},
		"PUT /api/v1/images/{name}/files/{file}": {priv: authz.ImageAdd, on: api.KindImage},
		"DELETE /api/v1/images/{name}":           {priv: authz.ImageDelete, on: api.KindImage},
		"POST /api/v1/uploads":                   {priv: authz.VMImport, on: onRoot},
		"PUT /api/v1/uploads/{id}/files":         {priv: authz.VMImport, on: onRoot},
		"DELETE /api/v1/uploads/{id}":            {priv: authz.VMImport, on: onRoot},
		"POST /api/v1/imports":                   {priv: authz.VMImport, on: onRoot},
		"GET /api/v1/exports/{id}/ova":           {priv: authz.VMExport, on: onRoot},
		"GET /api/v1/exports/{id}/files":         {priv: authz.VMExport, on: onRoot},
		"DELETE /api/v1/exports/{id}":            {priv: authz.VMExport, on: onRoot},

		"GET /api/v1/tasks":              {priv: authz.SystemRead, on: onList},
		"GET /api/v1/tasks/{id}":         {priv: authz.SystemRead, on: api.KindTask},
		"POST /api/v1/tasks/{id}/cancel": {priv: authz.TaskCancel, on: api.KindTask},
		"GET /api/v1/events":             {priv: authz.SystemRead, on: onList},
	}
	for kind, privs := range map[string][3]authz.Privilege{ // create, update, delete
		api.KindDatacenter: {authz.DatacenterCreate, authz.DatacenterConfig, authz.DatacenterDelete},
		api.KindCluster:    {authz.ClusterCreate, authz.ClusterEdit, authz.ClusterDelete},
		api.KindDatastore:  {authz.DatastoreCreate, authz.DatastoreConfig, authz.DatastoreDelete},
		api.KindPortGroup:  {authz.PortGroupCreate, authz.PortGroupModify, authz.PortGroupDelete},
		api.KindSwitch:     {authz.SwitchCreate, authz.SwitchModify, authz.SwitchDelete},
		api.KindFolder:     {authz.FolderCreate, authz.FolderRename, authz.FolderDelete},
	} {
		coll, one := "/api/v1/"+kind, "/api/v1/"+kind+"/{name}"
		m["GET "+coll] = access{priv: authz.SystemRead, on: onList}
		m["POST "+coll] = access{priv: privs[0], on: onRoot}
		m["GET "+one] = access{priv: authz.SystemRead, on: kind}
		m["PATCH "+one] = access{priv: privs[1], on: kind}
		m["DELETE "+one] = access{priv: privs[2], on: kind}
	}
	return m
}()
