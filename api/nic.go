package api

// NIC models (VMNIC.Model).
const (
	NICVirtio  = "virtio"
	NICE1000   = "e1000"
	NICRTL8139 = "rtl8139"
)

// Operations on a VM's NICs (Task.Op).
const (
	OpNICAdd    = "vm.nic-add"
	OpNICRemove = "vm.nic-remove"
	OpNICUpdate = "vm.nic-update"
)

// NICStatus is what the server tells of one NIC beyond its spec
// (computed when read).
type NICStatus struct {
	Name string `json:"name"`
	// Tap is the host's tap device of a NIC on a switch's port group
	// (`ip link show TAP` on the VM's host; its alias names the VM and
	// NIC); none for a NAT NIC, which QEMU's user-mode networking serves.
	Tap string `json:"tap,omitempty"`
}

// NICAddRequest is the body of POST /api/v1/vms/{vm}/nics: a new NIC,
// hot-plugged when the VM runs. Its name is the next free nicN.
type NICAddRequest = NICRequest

// NICUpdateRequest is the body of PATCH /api/v1/vms/{vm}/nics/{nic};
// absent fields stay. A running VM's NIC moves live to another port
// group of the same kind of switch (its tap is re-attached; the guest
// sees nothing but the new network); between a NAT port group and a
// switch's only while the VM is off. LinkDown unplugs the virtual cable
// (the guest sees no carrier), live, and stays so across power cycles.
type NICUpdateRequest struct {
	PortGroup *string `json:"portGroup,omitempty"`
	LinkDown  *bool   `json:"linkDown,omitempty"`
}
