package api

import "strings"

// KindFolder is the collection of VM folders.
const KindFolder = "folders"

// Folder groups VMs and templates of a datacenter, like vSphere's "VMs
// and Templates" folders, so that a permission on the folder applies to
// the VMs in it (and, propagating, in its subfolders). Folders nest; a
// folder's name is unique among its parent's folders only, and its path
// ("/web/prod") names it within its datacenter. A VM in no folder is at
// its datacenter's top level ("/").
type Folder struct {
	Metadata ObjectMeta   `json:"metadata"`
	Spec     FolderSpec   `json:"spec"`
	Status   FolderStatus `json:"status"`
}

type FolderSpec struct {
	Datacenter Ref `json:"datacenter"`
	// Parent is the folder this one is in; none: the datacenter's top
	// level. Answers name it by its path.
	Parent Ref `json:"parent,omitzero"`
	// Path is the folder's path from its datacenter's top level
	// ("/web/prod"), computed when read.
	Path        string `json:"path,omitempty"`
	Description string `json:"description,omitempty"`
}

// FolderStatus is computed when read: what is directly in the folder.
type FolderStatus struct {
	VMs     int `json:"vms"`
	Folders int `json:"folders"`
}

func (o *Folder) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Folder) Kind() string         { return KindFolder }

// NameScope is where a folder's name must be unique: among the folders
// of its parent, or of its datacenter's top level. The store indexes
// folder names under it.
func (o *Folder) NameScope() string {
	if !o.Spec.Parent.IsZero() {
		return o.Spec.Parent.ID
	}
	return o.Spec.Datacenter.ID
}

// MaxFolderDepth bounds how deep folders nest.
const MaxFolderDepth = 16

// SplitFolderPath checks a folder path ("/web/prod": absolute, names
// separated by single slashes) and returns its names; "/" (the top
// level) has none.
func SplitFolderPath(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, Errorf(ErrInvalid, "folder path %q must start with / (like /web/prod)", p)
	}
	if p == "/" {
		return nil, nil
	}
	names := strings.Split(p[1:], "/")
	if len(names) > MaxFolderDepth {
		return nil, Errorf(ErrInvalid, "folder path %q is %d folders deep; the limit is %d", p, len(names), MaxFolderDepth)
	}
	for _, n := range names {
		if err := ValidateName("folder", n); err != nil {
			return nil, Errorf(ErrInvalid, "folder path %q: %v", p, err)
		}
	}
	return names, nil
}

// FolderCreateRequest is the body of POST /api/v1/folders.
type FolderCreateRequest struct {
	// Path is the new folder's path in its datacenter ("/web/prod"). Its
	// parent ("/web") must exist, unless Parents is set: then the
	// missing folders on the way are made too.
	Path       string `json:"path"`
	Datacenter string `json:"datacenter,omitempty"` // name or ID; default: the only one
	Parents    bool   `json:"parents,omitempty"`
	// Labels and Description are the new folder's (not those made on the
	// way).
	Labels      map[string]string `json:"labels,omitempty"`
	Description string            `json:"description,omitempty"`
}

// FolderUpdateRequest is the body of PATCH /api/v1/folders/{name}; absent
// fields stay. A new name keeps the folder under its parent.
type FolderUpdateRequest struct {
	Name        *string           `json:"name,omitempty"`
	Description *string           `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// VMMoveRequest is the body of POST /api/v1/vms/{name}/move: the folder
// the VM goes in, by path ("/web/prod", "/" for the top level of its
// datacenter), name or ID.
type VMMoveRequest struct {
	Folder string `json:"folder"`
}
