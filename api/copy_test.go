package api

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// A copy equals the original and shares nothing with it.
func TestDeepCopy(t *testing.T) {
	now := time.Now().UTC()
	vm := &VM{Metadata: ObjectMeta{ID: "1", Name: "a", Labels: map[string]string{"k": "v"}, Revision: 7},
		Spec:   VMSpec{CPUs: 2, Disks: []VMDisk{{Name: "disk0"}}, NICs: []VMNIC{{MAC: "m"}}},
		Status: VMStatus{PowerState: PowerOn, PowerChanged: now}}
	task := &Task{Metadata: ObjectMeta{ID: "t"}, Params: json.RawMessage(`{"a":1}`), Error: &Error{Code: "x"}, Started: &now}
	host := &Host{Metadata: ObjectMeta{ID: "h"}, Status: HostStatus{Datastores: []Ref{{ID: "d"}}}}
	dc := &Datacenter{Metadata: ObjectMeta{ID: "d", Revision: 3, Labels: map[string]string{"a": "b"}}}
	for _, o := range []Object{vm, task, host, dc} {
		c := DeepCopy(o)
		if !reflect.DeepEqual(o, c) {
			t.Fatalf("%s copy differs:\n%+v\n%+v", o.Kind(), o, c)
		}
	}
	c := DeepCopy(vm)
	c.Metadata.Labels["k"] = "changed"
	c.Spec.Disks[0].Name = "changed"
	c.Spec.NICs[0].MAC = "changed"
	if vm.Metadata.Labels["k"] != "v" || vm.Spec.Disks[0].Name != "disk0" || vm.Spec.NICs[0].MAC != "m" {
		t.Fatal("VM copy shares memory with the original")
	}
	tc := DeepCopy(task)
	tc.Params[2] = 'b'
	tc.Error.Code = "y"
	*tc.Started = now.Add(time.Hour)
	if string(task.Params) != `{"a":1}` || task.Error.Code != "x" || !task.Started.Equal(now) {
		t.Fatal("task copy shares memory with the original")
	}
	hc := DeepCopy(host)
	hc.Status.Datastores[0].ID = "changed"
	if host.Status.Datastores[0].ID != "d" {
		t.Fatal("host copy shares memory with the original")
	}
	dcc := DeepCopy(dc)
	dcc.Metadata.Labels["a"] = "z"
	if dc.Metadata.Labels["a"] != "b" {
		t.Fatal("datacenter copy shares memory")
	}
}
