package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// fill sets every field of v (recursively) to a non-zero value, so that a
// copy that forgets a field, or shares memory with the original, shows.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Pointer:
		if v.Type() == reflect.TypeOf(&time.Time{}) {
			t := time.Unix(int64(*n), 0).UTC()
			v.Set(reflect.ValueOf(&t))
			return
		}
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			v.Set(reflect.ValueOf(time.Unix(int64(*n), 0).UTC()))
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Slice:
		if v.Type() == reflect.TypeOf(json.RawMessage{}) {
			v.Set(reflect.ValueOf(json.RawMessage(`{"n":1}`)))
			return
		}
		s := reflect.MakeSlice(v.Type(), 2, 2)
		fill(s.Index(0), n)
		fill(s.Index(1), n)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.String:
		v.SetString("s" + string(rune('a'+*n%26)))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint64:
		v.SetUint(uint64(*n))
	case reflect.Float64:
		v.SetFloat(float64(*n))
	}
}

// mutate changes every value v reaches through pointers, slices and maps
// (shared reaches true once behind one): what a copy must not share.
func mutate(v reflect.Value, shared bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			mutate(v.Elem(), true)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				mutate(v.Field(i), shared)
			}
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			mutate(v.Index(i), true)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			e := reflect.New(v.Type().Elem()).Elem()
			n := 500
			fill(e, &n)
			v.SetMapIndex(k, e)
		}
	default:
		if shared && v.CanSet() {
			n := 999
			fill(v, &n)
		}
	}
}

// A copy equals the original, and changing everything the copy reaches
// leaves the original as it was.
func TestDeepCopy(t *testing.T) {
	for _, o := range []Object{&VM{}, &Task{}, &Host{}, &Datacenter{}, &Cluster{}, &Datastore{}, &PortGroup{}, &Image{}, &Folder{}} {
		n := 0
		fill(reflect.ValueOf(o).Elem(), &n)
		before, _ := json.Marshal(o)
		c := DeepCopy(o)
		if !reflect.DeepEqual(o, c) {
			t.Fatalf("%s: the copy differs:\n%+v\n%+v", o.Kind(), o, c)
		}
		mutate(reflect.ValueOf(c).Elem(), false)
		after, _ := json.Marshal(o)
		if string(before) != string(after) {
			t.Errorf("%s: changing the copy changed the original:\n%s\n%s", o.Kind(), before, after)
		}
	}
}
