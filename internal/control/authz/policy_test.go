package authz

import (
	"fmt"
	"testing"
)

var (
	dc     = Object{"datacenters", "dc1"}
	web    = Object{"folders", "web"}
	db     = Object{"folders", "db"}
	web1   = Object{"vms", "web1"}
	db1    = Object{"vms", "db1"}
	host1  = Object{"hosts", "host1"}
	clus   = Object{"clusters", "cluster1"}
	inWeb  = []Object{web, host1, clus, dc}
	inDB   = []Object{db, host1, clus, dc}
	alice  = Subject{User: "alice", Groups: []string{"ops"}}
	bob    = Subject{User: "bob", Groups: []string{"ops", "dba"}}
	nobody = Subject{User: "eve"}
)

func TestEffectiveRightsFollowTheTree(t *testing.T) {
	p := NewPolicy([]Role{{Name: "SnapshotOnly", Privileges: sorted([]Privilege{SystemRead, VMSnapshotCreate})}}, []Permission{
		{Object: Root, Principal: "admin", Role: RoleAdministrator, Propagate: true},
		{Object: dc, Principal: "ops", Group: true, Role: RoleReadOnly, Propagate: true},
		{Object: web, Principal: "ops", Group: true, Role: RoleVMUser, Propagate: true},
		{Object: db, Principal: "dba", Group: true, Role: RoleVMPowerUser, Propagate: true},
		{Object: db, Principal: "ops", Group: true, Role: "SnapshotOnly", Propagate: true},
		{Object: db1, Principal: "alice", Role: RoleNoAccess},
		{Object: web, Principal: "bob", Role: RoleReadOnly, Propagate: true},
		{Object: clus, Principal: "carol", Role: RoleVMPowerUser}, // not propagating
	})
	admin, carol := Subject{User: "admin"}, Subject{User: "carol"}
	for _, c := range []struct {
		name string
		who  Subject
		priv Privilege
		obj  Object
		anc  []Object
		want bool
	}{
		{"admin on root reaches a VM", admin, VMDelete, web1, inWeb, true},
		{"admin on root reaches the root", admin, ModifyPermissions, Root, nil, true},
		{"group ReadOnly on the datacenter reads a host", alice, SystemRead, host1, []Object{clus, dc}, true},
		{"ReadOnly cannot change a host", alice, HostMaintenance, host1, []Object{clus, dc}, false},
		{"VirtualMachineUser on /web powers its VMs", alice, VMPowerOn, web1, inWeb, true},
		{"VirtualMachineUser cannot reconfigure", alice, VMConfigCPU, web1, inWeb, false},
		{"VirtualMachineUser on /web cannot create VMs there", alice, VMCreate, web, []Object{dc}, false},
		{"the folder's permission is nearer than the datacenter's", alice, VMPowerOff, web1, inWeb, true},
		{"NoAccess on a VM denies under the groups' rights", alice, SystemRead, db1, inDB, false},
		{"the user's own beats its group's at one object", bob, VMPowerOn, web1, inWeb, false},
		{"the user's own ReadOnly still reads", bob, SystemRead, web1, inWeb, true},
		{"groups add up at one object", bob, VMConfigCPU, db1, inDB, true},
		{"groups add up at one object (the other group's)", alice, VMSnapshotCreate, Object{"vms", "db2"}, inDB, true},
		{"a permission that does not propagate covers its object", carol, VMPowerOn, clus, []Object{dc}, true},
		{"and not what is under it", carol, VMPowerOn, web1, inWeb, false},
		{"nothing anywhere: nothing", nobody, SystemRead, web1, inWeb, false},
		{"an unknown privilege is never held", admin, Privilege("Made.Up"), web1, inWeb, false},
	} {
		if got := p.Allowed(c.who, c.priv, c.obj, c.anc); got != c.want {
			t.Errorf("%s: %s %s on %s = %v, want %v", c.name, c.who.User, c.priv, c.obj.ID, got, c.want)
		}
	}
}

func TestBuiltInRoles(t *testing.T) {
	for _, name := range []string{RoleAdministrator, RoleReadOnly, RoleNoAccess, RoleVMUser, RoleVMPowerUser} {
		r, ok := BuiltInRole(name)
		if !ok || !r.BuiltIn {
			t.Fatalf("no built-in role %s", name)
		}
		for _, p := range r.Privileges {
			if !Known(p) {
				t.Errorf("role %s holds %s, not in the catalogue", name, p)
			}
		}
		if (name == RoleNoAccess) != !r.Has(SystemRead) {
			t.Errorf("role %s: System.Read %v", name, r.Has(SystemRead))
		}
	}
	if r, _ := BuiltInRole(RoleAdministrator); len(r.Privileges) != len(All) {
		t.Errorf("Administrator holds %d of %d privileges", len(r.Privileges), len(All))
	}
	vu, _ := BuiltInRole(RoleVMUser)
	if !vu.Has(VMPowerOn) || !vu.Has(VMConsole) || vu.Has(VMCreate) || vu.Has(VMConfigCPU) {
		t.Errorf("VirtualMachineUser: %v", vu.Privileges)
	}
}

// benchInventory is 10,000 VMs in 100 folders on 100 hosts of 10
// clusters, with 1,000 permissions for 100 users in 20 groups.
func benchInventory() (*Policy, [][]Object, []Subject) {
	var perms []Permission
	perms = append(perms, Permission{Object: Root, Principal: "admin", Role: RoleAdministrator, Propagate: true})
	for i := range 999 {
		obj := Object{"folders", fmt.Sprint("f", i%100)}
		switch i % 4 {
		case 1:
			obj = Object{"vms", fmt.Sprint("vm", i*10)}
		case 2:
			obj = Object{"hosts", fmt.Sprint("h", i%100)}
		}
		perms = append(perms, Permission{Object: obj, Principal: fmt.Sprint("u", i%100), Group: i%3 == 0, Role: RoleVMUser, Propagate: true})
		if i%3 == 0 {
			perms[len(perms)-1].Principal = fmt.Sprint("g", i%20)
		}
	}
	p := NewPolicy(nil, perms)
	anc := make([][]Object, 10000)
	for i := range anc {
		anc[i] = []Object{{"folders", fmt.Sprint("f", i%100)}, {"hosts", fmt.Sprint("h", i%100)},
			{"clusters", fmt.Sprint("c", i%10)}, {"datacenters", "dc1"}}
	}
	users := make([]Subject, 100)
	for i := range users {
		users[i] = Subject{User: fmt.Sprint("u", i), Groups: []string{fmt.Sprint("g", i%20), fmt.Sprint("g", (i+7)%20)}}
	}
	return p, anc, users
}

// One check of one privilege on one VM.
func BenchmarkCheck(b *testing.B) {
	p, anc, users := benchInventory()
	vms := make([]Object, len(anc))
	for i := range vms {
		vms[i] = Object{"vms", fmt.Sprint("vm", i)}
	}
	b.ResetTimer()
	for i := range b.N {
		vm := i % len(anc)
		p.Allowed(users[i%len(users)], VMPowerOn, vms[vm], anc[vm])
	}
}

// Filtering a 10,000-VM list for a user who sees 10 % of it (VirtualMachineUser
// on 10 of the 100 folders) and for one who sees all of it (the admin,
// Administrator on the root): one list per op.
func BenchmarkListFilter(b *testing.B) {
	p, anc, _ := benchInventory()
	vms := make([]Object, len(anc))
	for i := range vms {
		vms[i] = Object{"vms", fmt.Sprint("vm", i)}
	}
	perms := []Permission{{Object: Root, Principal: "admin", Role: RoleAdministrator, Propagate: true}}
	for i := range 10 {
		perms = append(perms, Permission{Object: Object{"folders", fmt.Sprint("f", i*10)}, Principal: "tenpct", Role: RoleVMUser, Propagate: true})
	}
	p = NewPolicy(nil, append(perms, p.byObjectList()...))
	for _, c := range []struct {
		name string
		who  Subject
		want int
	}{{"tenth", Subject{User: "tenpct"}, 1000}, {"admin", Subject{User: "admin"}, 10000}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				n := 0
				for i, vm := range vms {
					if p.Allowed(c.who, SystemRead, vm, anc[i]) {
						n++
					}
				}
				if n < c.want {
					b.Fatalf("%s sees %d VMs, want at least %d", c.name, n, c.want)
				}
			}
		})
	}
}

// byObjectList is every permission of p.
func (p *Policy) byObjectList() []Permission {
	var out []Permission
	for _, ps := range p.byObject {
		out = append(out, ps...)
	}
	return out
}
