package ovs

import (
	"context"
	"maps"
	"slices"
	"strconv"
)

// External IDs on every OVSDB record the backend makes: vdc-owner says
// the backend made it (Converge removes such records when no longer
// wanted, and never touches others); the rest say what it is for.
const (
	extOwner     = "vdc-owner"
	extPortGroup = "vdc-portgroup"
	extSwitch    = "vdc-switch"
	extPeer      = "vdc-peer"
	extUplinks   = "vdc-uplinks"
	extMoved     = "vdc-moved" // an uplink bridge's moved addresses and routes (JSON)
	extRole      = "vdc-role"  // what a port is: tap, tunnel, patch, uplink
)

// ovsState is the backend's view of its Open vSwitch database.
type ovsState struct {
	bridges map[string]*dbBridge // by name
	ports   map[string]*dbPort   // by name
	ifaces  map[string]*dbIface  // by name
	qos     map[string]*dbQoS    // by UUID
	queues  map[string]*dbQueue  // by UUID
}

type dbBridge struct {
	uuid, name, datapath, failMode string
	ext, other                     map[string]string
	ports                          []string // port names
}

type dbPort struct {
	uuid, name string
	bridge     string // name of the bridge holding it; "" when none
	ext, other map[string]string
	tag        int
	trunks     []int
	vlanMode   string
	bondMode   string
	qos        string   // UUID, "" for none
	ifaces     []string // interface names
	protected  bool
}

type dbIface struct {
	uuid, name, typ string
	options, ext    map[string]string
	mtuRequest      int
	ofport          int
	err             string
}

type dbQoS struct {
	uuid, typ   string
	other, ext  map[string]string
	queues      map[string]string // queue number -> Queue UUID
	referencers int
}

type dbQueue struct {
	uuid       string
	other, ext map[string]string
}

func (b *dbBridge) owned() bool { return b.ext[extOwner] == Name }
func (p *dbPort) owned() bool   { return p.ext[extOwner] == Name }

var stateColumns = map[string][]string{
	"Bridge":    {"_uuid", "name", "datapath_type", "fail_mode", "external_ids", "other_config", "ports"},
	"Port":      {"_uuid", "name", "external_ids", "other_config", "tag", "trunks", "vlan_mode", "bond_mode", "qos", "interfaces", "protected"},
	"Interface": {"_uuid", "name", "type", "options", "external_ids", "mtu_request", "ofport", "error"},
	"QoS":       {"_uuid", "type", "other_config", "external_ids", "queues"},
	"Queue":     {"_uuid", "other_config", "external_ids"},
}

var stateOrder = []string{"Bridge", "Port", "Interface", "QoS", "Queue"}

// readState reads the bridges, ports, interfaces and QoS of the
// database in one snapshot.
func (c ctl) readState(ctx context.Context) (*ovsState, error) {
	tables, err := c.listTables(ctx, stateColumns, stateOrder)
	if err != nil {
		return nil, err
	}
	st := &ovsState{bridges: map[string]*dbBridge{}, ports: map[string]*dbPort{}, ifaces: map[string]*dbIface{},
		qos: map[string]*dbQoS{}, queues: map[string]*dbQueue{}}
	ifaceByUUID, portByUUID := map[string]string{}, map[string]*dbPort{}
	for _, r := range tables["Interface"] {
		i := &dbIface{uuid: atom(r["_uuid"]), name: atom(r["name"]), typ: atom(r["type"]),
			options: ovsMap(r["options"]), ext: ovsMap(r["external_ids"]), mtuRequest: ovsInt(r["mtu_request"]),
			ofport: ovsInt(r["ofport"]), err: firstOf(ovsSet(r["error"]))}
		st.ifaces[i.name] = i
		ifaceByUUID[i.uuid] = i.name
	}
	for _, r := range tables["Port"] {
		p := &dbPort{uuid: atom(r["_uuid"]), name: atom(r["name"]), ext: ovsMap(r["external_ids"]),
			other: ovsMap(r["other_config"]), tag: ovsInt(r["tag"]), vlanMode: firstOf(ovsSet(r["vlan_mode"])),
			bondMode: firstOf(ovsSet(r["bond_mode"])), qos: firstOf(ovsSet(r["qos"])), protected: atom(r["protected"]) == "true"}
		for _, t := range ovsSet(r["trunks"]) {
			if n, err := strconv.Atoi(t); err == nil {
				p.trunks = append(p.trunks, n)
			}
		}
		slices.Sort(p.trunks)
		for _, u := range ovsSet(r["interfaces"]) {
			p.ifaces = append(p.ifaces, ifaceByUUID[u])
		}
		slices.Sort(p.ifaces)
		st.ports[p.name] = p
		portByUUID[p.uuid] = p
	}
	for _, r := range tables["Bridge"] {
		b := &dbBridge{uuid: atom(r["_uuid"]), name: atom(r["name"]), datapath: atom(r["datapath_type"]),
			failMode: firstOf(ovsSet(r["fail_mode"])), ext: ovsMap(r["external_ids"]), other: ovsMap(r["other_config"])}
		for _, u := range ovsSet(r["ports"]) {
			if p := portByUUID[u]; p != nil {
				p.bridge = b.name
				b.ports = append(b.ports, p.name)
			}
		}
		st.bridges[b.name] = b
	}
	for _, r := range tables["QoS"] {
		q := &dbQoS{uuid: atom(r["_uuid"]), typ: atom(r["type"]), other: ovsMap(r["other_config"]),
			ext: ovsMap(r["external_ids"]), queues: ovsMap(r["queues"])}
		st.qos[q.uuid] = q
	}
	for _, p := range st.ports {
		if q := st.qos[p.qos]; q != nil {
			q.referencers++
		}
	}
	for _, r := range tables["Queue"] {
		q := &dbQueue{uuid: atom(r["_uuid"]), other: ovsMap(r["other_config"]), ext: ovsMap(r["external_ids"])}
		st.queues[q.uuid] = q
	}
	return st, nil
}

func firstOf(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
