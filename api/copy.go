package api

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
)

// DeepCopy returns a copy that shares nothing with o. The hot types are
// copied by hand (the server copies them on every write): a new pointer,
// slice or map field in them must be added here (TestDeepCopy checks
// every such field). The rest go through JSON.
func DeepCopy[T Object](o T) T {
	var out Object
	switch v := any(o).(type) {
	case *VM:
		c := *v
		c.Metadata = v.Metadata.copy()
		c.Spec.Disks = slices.Clone(v.Spec.Disks)
		c.Spec.NICs = slices.Clone(v.Spec.NICs)
		if v.Spec.Boot != nil {
			b := *v.Spec.Boot
			c.Spec.Boot = &b
		}
		if v.Status.Guest != nil {
			g := *v.Status.Guest
			g.IPAddresses = slices.Clone(v.Status.Guest.IPAddresses)
			c.Status.Guest = &g
		}
		c.Status.Disks = slices.Clone(v.Status.Disks)
		c.Status.NICs = slices.Clone(v.Status.NICs)
		copyStorage(&c, v)
		out = &c
	case *Host:
		c := *v
		c.Metadata = v.Metadata.copy()
		c.Status.Datastores = slices.Clone(v.Status.Datastores)
		c.Status.Networks = slices.Clone(v.Status.Networks)
		c.Status.Uplinks = slices.Clone(v.Status.Uplinks)
		for i, u := range c.Status.Uplinks {
			c.Status.Uplinks[i].Addresses = slices.Clone(u.Addresses)
			c.Status.Uplinks[i].Neighbors = slices.Clone(u.Neighbors)
		}
		for i, n := range c.Status.Networks {
			c.Status.Networks[i].PortGroups = maps.Clone(n.PortGroups)
		}
		if v.Status.Certificate != nil {
			hc := *v.Status.Certificate
			c.Status.Certificate = &hc
		}
		out = &c
	case *Task:
		c := *v
		c.Metadata = v.Metadata.copy()
		c.Params = slices.Clone(v.Params)
		c.Result = slices.Clone(v.Result)
		c.Claims = slices.Clone(v.Claims)
		if v.Error != nil {
			e := *v.Error
			c.Error = &e
		}
		if v.Started != nil {
			t := *v.Started
			c.Started = &t
		}
		if v.Finished != nil {
			t := *v.Finished
			c.Finished = &t
		}
		out = &c
	default:
		b, err := json.Marshal(o)
		if err != nil {
			panic("copy " + o.Kind() + ": " + err.Error())
		}
		n := newOf(o)
		if err := json.Unmarshal(b, n); err != nil {
			panic("copy " + o.Kind() + ": " + err.Error())
		}
		n.GetMeta().Revision = o.GetMeta().Revision
		out = n
	}
	return out.(T)
}

func (m ObjectMeta) copy() ObjectMeta {
	m.Labels = maps.Clone(m.Labels)
	return m
}

// newOf is a new, empty object of o's type.
func newOf(o Object) Object { return reflect.New(reflect.TypeOf(o).Elem()).Interface().(Object) }
