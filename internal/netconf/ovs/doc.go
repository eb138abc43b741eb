// Package ovs is the netconf backend on Open vSwitch (Debian's
// openvswitch-switch), the pluggable-switch case: the same desired
// state as the bridge backend, realized by an OVS of vdc's own.
package ovs
