package api

// Roles and permissions: who may do what on which object, as vSphere's
// (see internal/control/authz for how effective rights are worked out).
const (
	KindRole       = "roles"
	KindPermission = "permissions"
)

// AdminUser is the user of the admin token `vdc up` and a new server
// write: it holds the Administrator role on the root, always (no stored
// permission; it cannot be taken away, so no one is ever locked out).
const AdminUser = "admin"

// Role is a named set of privileges ("VirtualMachine.Interact.PowerOn").
// The built-in roles (Administrator, ReadOnly, NoAccess,
// VirtualMachineUser, VirtualMachinePowerUser) are listed with the
// stored ones and cannot change.
type Role struct {
	Metadata ObjectMeta `json:"metadata"`
	Spec     RoleSpec   `json:"spec"`
}

type RoleSpec struct {
	Privileges  []string `json:"privileges"`
	BuiltIn     bool     `json:"builtIn,omitempty"`
	Description string   `json:"description,omitempty"`
}

func (o *Role) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Role) Kind() string         { return KindRole }

// RoleCreateRequest is the body of POST /api/v1/roles.
type RoleCreateRequest struct {
	Name        string   `json:"name"`
	Privileges  []string `json:"privileges"`
	Description string   `json:"description,omitempty"`
}

// Permission gives a user (or a group, with Group) a role on an object
// and, with Propagate, on everything under it. Its name is made from
// the three: one permission per principal and object.
type Permission struct {
	Metadata ObjectMeta     `json:"metadata"`
	Spec     PermissionSpec `json:"spec"`
}

type PermissionSpec struct {
	Principal string `json:"principal"`
	Group     bool   `json:"group,omitempty"`
	Role      string `json:"role"`
	// Object is what the permission is on; Kind "root" (and no ID) is
	// the whole system.
	Object    ObjectRef `json:"object"`
	Propagate bool      `json:"propagate,omitempty"`
}

// ObjectRef names an object of any kind.
type ObjectRef struct {
	Kind string `json:"kind"`
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

func (o *Permission) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Permission) Kind() string         { return KindPermission }

// PermissionCreateRequest is the body of POST /api/v1/permissions.
type PermissionCreateRequest struct {
	Principal string `json:"principal"`
	Group     bool   `json:"group,omitempty"`
	Role      string `json:"role"`
	// Object is KIND:NAME ("vms:web1", "hosts:host-1", "datacenters:dc1")
	// or "root".
	Object    string `json:"object"`
	Propagate bool   `json:"propagate,omitempty"`
}
