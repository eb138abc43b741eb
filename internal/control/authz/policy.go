package authz

import (
	"fmt"
	"slices"
)

// Object is a node of the inventory as the rules see it: a kind (the API's
// collection names: "vms", "folders", "hosts"...) and an ID.
type Object struct {
	Kind, ID string
}

// Root is the top of the inventory, above every datacenter: a permission
// there covers the whole system.
var Root = Object{Kind: "root"}

// Permission gives a user (or, with Group, a group) a role on an object,
// and, with Propagate, on everything under it.
type Permission struct {
	Object    Object
	Principal string
	Group     bool
	Role      string
	Propagate bool
}

// Subject is who asks: a user and the groups it is a member of.
type Subject struct {
	User   string
	Groups []string
}

// set is a set of privileges, by their index in All.
type set [(len0 + 63) / 64]uint64

// len0 bounds the catalogue's size (checked at init).
const len0 = 128

var index = func() map[Privilege]int {
	if len(All) > len0 {
		panic(fmt.Sprintf("authz: %d privileges, the sets hold %d", len(All), len0))
	}
	m := make(map[Privilege]int, len(All))
	for i, p := range All {
		m[p] = i
	}
	return m
}()

func setOf(ps []Privilege) set {
	var s set
	for _, p := range ps {
		if i, ok := index[p]; ok {
			s[i/64] |= 1 << (i % 64)
		}
	}
	return s
}

func (s set) has(p Privilege) bool {
	i, ok := index[p]
	return ok && s[i/64]&(1<<(i%64)) != 0
}

func (s *set) add(o set) {
	for i := range s {
		s[i] |= o[i]
	}
}

// Policy is the roles and permissions of a datacenter at one moment,
// indexed for checks: make a new one when they change.
type Policy struct {
	roles    map[string]set
	byObject map[Object][]Permission
}

// NewPolicy indexes roles (the built-in ones are added) and permissions.
// A permission naming an unknown role grants nothing.
func NewPolicy(roles []Role, perms []Permission) *Policy {
	p := &Policy{roles: map[string]set{}, byObject: map[Object][]Permission{}}
	for _, r := range slices.Concat(BuiltIn, roles) {
		p.roles[r.Name] = setOf(r.Privileges)
	}
	for _, x := range perms {
		p.byObject[x.Object] = append(p.byObject[x.Object], x)
	}
	return p
}

// Rights are a subject's privileges on one object.
type Rights struct{ s set }

// Has says whether the rights hold p.
func (r Rights) Has(p Privilege) bool { return r.s.has(p) }

// None says whether the rights hold nothing at all.
func (r Rights) None() bool { return r.s == set{} }

// Rights are who's privileges on obj, whose ancestors (nearest first;
// Root is implied at the end) are given: see the package doc.
func (p *Policy) Rights(who Subject, obj Object, ancestors []Object) Rights {
	if r, ok := p.at(who, obj, true); ok {
		return r
	}
	for _, a := range ancestors {
		if r, ok := p.at(who, a, false); ok {
			return r
		}
	}
	if r, ok := p.at(who, Root, obj == Root); ok {
		return r
	}
	return Rights{}
}

// at is who's rights from the permissions on o, if any applies there
// (self: o is the object asked about, so permissions that do not
// propagate apply too).
func (p *Policy) at(who Subject, o Object, self bool) (Rights, bool) {
	perms := p.byObject[o]
	if len(perms) == 0 {
		return Rights{}, false
	}
	var groups set
	found := false
	for _, x := range perms {
		if !self && !x.Propagate {
			continue
		}
		if !x.Group {
			if x.Principal == who.User {
				return Rights{p.roles[x.Role]}, true
			}
			continue
		}
		if slices.Contains(who.Groups, x.Principal) {
			groups.add(p.roles[x.Role])
			found = true
		}
	}
	return Rights{groups}, found
}

// Allowed says whether who holds priv on obj.
func (p *Policy) Allowed(who Subject, priv Privilege, obj Object, ancestors []Object) bool {
	return p.Rights(who, obj, ancestors).Has(priv)
}

// HoldsAnywhere says whether some permission gives who priv on some
// object: a call that names its objects in its body is refused at once
// (before its body is read) to a caller holding the privilege nowhere.
func (p *Policy) HoldsAnywhere(who Subject, priv Privilege) bool {
	for _, perms := range p.byObject {
		for _, x := range perms {
			if (x.Group && slices.Contains(who.Groups, x.Principal) || !x.Group && x.Principal == who.User) && p.roles[x.Role].has(priv) {
				return true
			}
		}
	}
	return false
}

// Narrow keeps of r the privileges of role (none if there is no such
// role): what a token made for a role may do.
func (p *Policy) Narrow(r Rights, role string) Rights {
	keep := p.roles[role]
	for i := range r.s {
		r.s[i] &= keep[i]
	}
	return r
}

// Everything is every privilege, as Rights.
func Everything() Rights { return Rights{setOf(All)} }
