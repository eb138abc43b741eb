package api

import (
	"strings"
	"time"
)

// Kinds name the object collections; they are also the REST path segment
// (/api/v1/<kind>) and the etcd key segment.
const (
	KindDatacenter = "datacenters"
	KindCluster    = "clusters"
	KindHost       = "hosts"
	KindDatastore  = "datastores"
	KindPortGroup  = "portgroups"
	KindVM         = "vms"
	KindTask       = "tasks"
	KindImage      = "images"
)

// ObjectMeta is the part every object shares.
type ObjectMeta struct {
	ID     string            `json:"id"`
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// Generation counts the changes made to the object's spec and metadata
	// (not to its status, which hosts update all the time). Send it back in
	// If-Match to change only the version you read.
	Generation int64 `json:"generation,omitempty"`
	// Revision is the store revision of the object's last change of any kind.
	Revision int64     `json:"revision,omitempty"`
	Created  time.Time `json:"created"`
}

// Object is implemented by every stored type.
type Object interface {
	GetMeta() *ObjectMeta
	Kind() string
}

// Ref points at another object. Stored by ID; the server fills in the
// current name when it answers.
type Ref struct {
	ID   string `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// IsZero reports whether the reference points nowhere.
func (r Ref) IsZero() bool { return r.ID == "" }

// String prints the name when known, else the ID.
func (r Ref) String() string {
	if r.Name != "" {
		return r.Name
	}
	return r.ID
}

// Singular names one object of a kind, for messages: "vms" → "vm".
func Singular(kind string) string {
	switch kind {
	case KindVM:
		return "vm"
	case KindPortGroup:
		return "port group"
	case KindSwitch:
		return "switch"
	}
	return strings.TrimSuffix(kind, "s")
}
