// Package authz decides who may do what on which object, as vSphere does:
// privileges (named like vSphere's) grouped into roles, and permissions
// that give a user or a group a role on an object of the inventory,
// propagating to what lies under it or not. It is pure: the inventory
// tree and the permissions come in through interfaces and values, so the
// rules are tested and measured without a server.
//
// # Effective rights
//
// For a principal (a user and the groups it belongs to) and an object,
// the object's ancestry is walked from the object itself upwards (a VM:
// the VM, its folders from the innermost, its host, its cluster, its
// datacenter, then the root; a folder: the folder, its parent folders
// from the innermost, its datacenter, the root). At the first object in
// that walk holding a permission that applies (on the object itself, or
// propagating from an ancestor), the walk stops, and:
//   - a permission of the user itself decides alone (a user's own beats
//     its groups');
//   - otherwise the privileges of every applying group permission there
//     add up.
//
// So the most specific permission wins, and NoAccess (a role with no
// privileges) denies what it covers, even under an ancestor's
// Administrator. With no permission anywhere on the way the principal
// has no rights.
package authz

import (
	"slices"
	"strings"
)

// Privilege is one right, named like vSphere's ("VirtualMachine.Interact.PowerOn").
type Privilege string

// The privileges. System.Read is the right to see an object at all; every
// built-in role but NoAccess has it.
const (
	SystemRead Privilege = "System.Read"

	DatacenterCreate Privilege = "Datacenter.Create"
	DatacenterConfig Privilege = "Datacenter.Config"
	DatacenterDelete Privilege = "Datacenter.Delete"

	ClusterCreate Privilege = "Host.Inventory.CreateCluster"
	ClusterEdit   Privilege = "Host.Inventory.EditCluster"
	ClusterDelete Privilege = "Host.Inventory.DeleteCluster"

	HostAdd         Privilege = "Host.Inventory.AddHostToCluster"
	HostRemove      Privilege = "Host.Inventory.RemoveHostFromCluster"
	HostConfig      Privilege = "Host.Config.Settings"
	HostMaintenance Privilege = "Host.Config.Maintenance"

	DatastoreCreate   Privilege = "Host.Config.Storage"
	DatastoreConfig   Privilege = "Datastore.Config"
	DatastoreDelete   Privilege = "Datastore.Delete"
	DatastoreAllocate Privilege = "Datastore.AllocateSpace"
	DatastoreBrowse   Privilege = "Datastore.Browse"

	SwitchCreate    Privilege = "DVSwitch.Create"
	SwitchModify    Privilege = "DVSwitch.Modify"
	SwitchDelete    Privilege = "DVSwitch.Delete"
	PortGroupCreate Privilege = "DVPortgroup.Create"
	PortGroupModify Privilege = "DVPortgroup.Modify"
	PortGroupDelete Privilege = "DVPortgroup.Delete"
	NetworkAssign   Privilege = "Network.Assign"

	FolderCreate Privilege = "Folder.Create"
	FolderDelete Privilege = "Folder.Delete"
	FolderRename Privilege = "Folder.Rename"

	VMCreate           Privilege = "VirtualMachine.Inventory.Create"
	VMDelete           Privilege = "VirtualMachine.Inventory.Delete"
	VMMove             Privilege = "VirtualMachine.Inventory.Move"
	VMPowerOn          Privilege = "VirtualMachine.Interact.PowerOn"
	VMPowerOff         Privilege = "VirtualMachine.Interact.PowerOff"
	VMReset            Privilege = "VirtualMachine.Interact.Reset"
	VMSuspend          Privilege = "VirtualMachine.Interact.Suspend"
	VMConsole          Privilege = "VirtualMachine.Interact.ConsoleInteract"
	VMGuestExec        Privilege = "VirtualMachine.GuestOperations.Execute"
	VMConfigSettings   Privilege = "VirtualMachine.Config.Settings"
	VMConfigCPU        Privilege = "VirtualMachine.Config.CPUCount"
	VMConfigMemory     Privilege = "VirtualMachine.Config.Memory"
	VMConfigRename     Privilege = "VirtualMachine.Config.Rename"
	VMConfigAddDisk    Privilege = "VirtualMachine.Config.AddNewDisk"
	VMConfigRemoveDisk Privilege = "VirtualMachine.Config.RemoveDisk"
	VMConfigExtendDisk Privilege = "VirtualMachine.Config.DiskExtend"
	VMConfigDevices    Privilege = "VirtualMachine.Config.AddRemoveDevice"
	VMConfigEditDevice Privilege = "VirtualMachine.Config.EditDevice"
	VMSnapshotCreate   Privilege = "VirtualMachine.State.CreateSnapshot"
	VMSnapshotRevert   Privilege = "VirtualMachine.State.RevertToSnapshot"
	VMSnapshotRemove   Privilege = "VirtualMachine.State.RemoveSnapshot"
	VMClone            Privilege = "VirtualMachine.Provisioning.Clone"
	VMMarkTemplate     Privilege = "VirtualMachine.Provisioning.MarkAsTemplate"
	VMMarkVM           Privilege = "VirtualMachine.Provisioning.MarkAsVM"
	VMMigrateHot       Privilege = "Resource.HotMigrateVM"
	VMMigrateCold      Privilege = "Resource.ColdMigrate"
	VMExport           Privilege = "VApp.Export"
	VMImport           Privilege = "VApp.Import"

	ImageAdd    Privilege = "ContentLibrary.AddLibraryItem"
	ImageDelete Privilege = "ContentLibrary.DeleteLibraryItem"

	TaskCancel Privilege = "Task.Update"

	ModifyPermissions Privilege = "Authorization.ModifyPermissions"
	ModifyRoles       Privilege = "Authorization.ModifyRoles"
	ModifyUsers       Privilege = "Authorization.ModifyUsers"
	ManageSessions    Privilege = "Sessions.TerminateSession"
	ReadAudit         Privilege = "Global.Diagnostics"
)

// All is every privilege, sorted: the Administrator role's.
var All = sorted([]Privilege{
	SystemRead,
	DatacenterCreate, DatacenterConfig, DatacenterDelete,
	ClusterCreate, ClusterEdit, ClusterDelete,
	HostAdd, HostRemove, HostConfig, HostMaintenance,
	DatastoreCreate, DatastoreConfig, DatastoreDelete, DatastoreAllocate, DatastoreBrowse,
	SwitchCreate, SwitchModify, SwitchDelete, PortGroupCreate, PortGroupModify, PortGroupDelete, NetworkAssign,
	FolderCreate, FolderDelete, FolderRename,
	VMCreate, VMDelete, VMMove, VMPowerOn, VMPowerOff, VMReset, VMSuspend, VMConsole, VMGuestExec,
	VMConfigSettings, VMConfigCPU, VMConfigMemory, VMConfigRename, VMConfigAddDisk, VMConfigRemoveDisk, VMConfigExtendDisk,
	VMConfigDevices, VMConfigEditDevice, VMSnapshotCreate, VMSnapshotRevert, VMSnapshotRemove,
	VMClone, VMMarkTemplate, VMMarkVM, VMMigrateHot, VMMigrateCold, VMExport, VMImport,
	ImageAdd, ImageDelete, TaskCancel,
	ModifyPermissions, ModifyRoles, ModifyUsers, ManageSessions, ReadAudit,
})

// Known says whether p is a privilege of the catalogue.
func Known(p Privilege) bool {
	_, ok := slices.BinarySearch(All, p)
	return ok
}

// Names of the built-in roles.
const (
	RoleAdministrator = "Administrator"
	RoleReadOnly      = "ReadOnly"
	RoleNoAccess      = "NoAccess"
	RoleVMUser        = "VirtualMachineUser"
	RoleVMPowerUser   = "VirtualMachinePowerUser"
)

// Role is a named set of privileges.
type Role struct {
	Name       string
	Privileges []Privilege // sorted
	BuiltIn    bool
}

// Has says whether the role holds p.
func (r Role) Has(p Privilege) bool {
	_, ok := slices.BinarySearch(r.Privileges, p)
	return ok
}

var vmUser = []Privilege{SystemRead, VMPowerOn, VMPowerOff, VMReset, VMSuspend, VMConsole}

// BuiltIn are the roles every datacenter has; they cannot change.
var BuiltIn = []Role{
	{Name: RoleAdministrator, Privileges: All, BuiltIn: true},
	{Name: RoleReadOnly, Privileges: []Privilege{SystemRead}, BuiltIn: true},
	{Name: RoleNoAccess, BuiltIn: true},
	{Name: RoleVMUser, Privileges: sorted(vmUser), BuiltIn: true},
	{Name: RoleVMPowerUser, Privileges: sorted(append(slices.Clone(vmUser),
		VMGuestExec, VMConfigSettings, VMConfigCPU, VMConfigMemory, VMConfigRename, VMConfigAddDisk, VMConfigRemoveDisk,
		VMConfigExtendDisk, VMConfigDevices, VMConfigEditDevice, VMSnapshotCreate, VMSnapshotRevert, VMSnapshotRemove,
		VMClone, VMMarkTemplate, VMMarkVM, DatastoreBrowse)), BuiltIn: true},
}

// BuiltInRole returns the built-in role of that name.
func BuiltInRole(name string) (Role, bool) {
	for _, r := range BuiltIn {
		if strings.EqualFold(r.Name, name) {
			return r, true
		}
	}
	return Role{}, false
}

func sorted(ps []Privilege) []Privilege {
	ps = slices.Clone(ps)
	slices.Sort(ps)
	return slices.Compact(ps)
}
