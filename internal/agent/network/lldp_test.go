package network

import (
	"testing"
)

// lldpcli's JSON from two neighbours on two interfaces: a list of
// objects, where one neighbour alone is an object.
const twoNeighbors = `{"lldp": {"interface": [
 {"eth0": {"via": "LLDP", "chassis": {"tor1": {"id": {"type": "mac", "value": "52:54:00:aa:bb:cc"}, "descr": "Arista", "mgmt-ip": ["10.0.0.1", "fe80::1"]}},
  "port": {"id": {"type": "ifname", "value": "Ethernet12"}, "descr": "to esx1"}}},
 {"eth1": {"via": "LLDP", "chassis": {"tor2": {"id": {"type": "mac", "value": "52:54:00:dd:ee:ff"}, "mgmt-ip": "10.0.0.2"}},
  "port": {"id": {"type": "ifname", "value": "Ethernet3"}}}}
]}}`

func TestParseNeighbors(t *testing.T) {
	got, err := parseNeighbors([]byte(twoNeighbors))
	if err != nil {
		t.Fatal(err)
	}
	e0, e1 := got["eth0"], got["eth1"]
	if len(e0) != 1 || e0[0].SysName != "tor1" || e0[0].ChassisID != "52:54:00:aa:bb:cc" || e0[0].PortID != "Ethernet12" ||
		e0[0].PortDescr != "to esx1" || e0[0].MgmtIP != "10.0.0.1" || e0[0].Description != "Arista" {
		t.Fatalf("eth0's neighbour = %+v", e0)
	}
	if len(e1) != 1 || e1[0].SysName != "tor2" || e1[0].PortID != "Ethernet3" || e1[0].MgmtIP != "10.0.0.2" {
		t.Fatalf("eth1's neighbour = %+v", e1)
	}
	one, err := parseNeighbors([]byte(`{"lldp": {"interface": {"eth0": {"chassis": {"h2": {"id": {"value": "fe:2a"}}}, "port": {"id": {"value": "fe:2a"}, "descr": "eth0"}}}}}`))
	if err != nil || len(one["eth0"]) != 1 || one["eth0"][0].SysName != "h2" || one["eth0"][0].PortDescr != "eth0" {
		t.Fatalf("one neighbour = %+v, %v", one, err)
	}
	if none, err := parseNeighbors([]byte(`{"lldp": {}}`)); err != nil || len(none) != 0 {
		t.Fatalf("no neighbour = %+v, %v", none, err)
	}
	if _, err := parseNeighbors([]byte(`{"lldp": `)); err == nil {
		t.Fatal("cut JSON read without an error")
	}
}
