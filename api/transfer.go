package api

// Import formats.
const (
	ImportOVA        = "ova"
	ImportOVF        = "ovf"
	ImportFormatDisk = "disk"
)

// UploadRequest is the body of POST /api/v1/uploads: a staging folder on a
// datastore for the files of an import.
type UploadRequest struct {
	Datastore string `json:"datastore,omitempty"` // default: the only shared one
}

// Upload is a staging folder files are uploaded into (PUT
// /api/v1/uploads/{id}/files?name=N), then imported from.
type Upload struct {
	ID        string `json:"id"`
	Datastore Ref    `json:"datastore"`
}

// UploadedFile is what the host received of one file.
type UploadedFile struct {
	Name   string `json:"name"`
	Size   Size   `json:"size"`
	SHA256 string `json:"sha256"`
}

// ImportRequest is the body of POST /api/v1/imports: make VMs from an OVF
// package (OVA, or OVF with its files) or a foreign disk.
type ImportRequest struct {
	Format string `json:"format"` // ova, ovf or disk
	// The source: an upload (its ID), or an http(s) URL the host fetches.
	Upload string `json:"upload,omitempty"`
	URL    string `json:"url,omitempty"`
	// Descriptor is an OVF descriptor's text, for a dry run of a package
	// not uploaded yet.
	Descriptor string `json:"descriptor,omitempty"`
	// DryRun plans without changing anything: the answer is an ImportPlan.
	DryRun bool `json:"dryRun,omitempty"`

	// Name of the VM (default: the package's); for several VMs, a prefix.
	Name      string `json:"name,omitempty"`
	Cluster   string `json:"cluster,omitempty"`
	Host      string `json:"host,omitempty"`
	Datastore string `json:"datastore,omitempty"`
	// Networks maps the package's networks to port groups (default: the
	// datacenter's only port group).
	Networks map[string]string `json:"networks,omitempty"`
	// Properties set ProductSection properties (key or class.key.instance).
	Properties map[string]string `json:"properties,omitempty"`
	Deployment string            `json:"deployment,omitempty"`
	// AcceptEULA accepts the package's license agreements; without it a
	// package that has any is refused.
	AcceptEULA bool `json:"acceptEula,omitempty"`
	// SkipManifest imports without checking the manifest and certificate.
	SkipManifest bool              `json:"skipManifest,omitempty"`
	PowerOn      bool              `json:"powerOn,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`

	// For a disk: the file in the upload (default: the only one), and the
	// VM it becomes a disk of. An existing VM (powered off) gets it as a
	// new disk; otherwise a VM of that name is made with CPUs and Memory.
	File   string `json:"file,omitempty"`
	VM     string `json:"vm,omitempty"`
	CPUs   int    `json:"cpus,omitempty"`
	Memory Size   `json:"memory,omitempty"`
	Bus    string `json:"bus,omitempty"`
}

// ImportPlan is what an import makes (the answer to a dry run).
type ImportPlan struct {
	Format     string           `json:"format"`
	OVFVersion string           `json:"ovfVersion,omitempty"`
	VMs        []ImportVM       `json:"vms"`
	Deployment string           `json:"deployment,omitempty"`
	Options    []ImportOption   `json:"deploymentOptions,omitempty"`
	Properties []ImportProperty `json:"properties,omitempty"`
	EULAs      []string         `json:"eulas,omitempty"`
	Warnings   []string         `json:"warnings,omitempty"`
}

// ImportVM is one VM an import makes.
type ImportVM struct {
	Name        string       `json:"name"`
	CPUs        int          `json:"cpus"`
	Memory      Size         `json:"memory"`
	Disks       []ImportDisk `json:"disks"`
	NICs        []ImportNIC  `json:"nics"`
	OS          string       `json:"os,omitempty"`
	Datastore   Ref          `json:"datastore"`
	Description string       `json:"description,omitempty"`
	// PropertiesISO says the VM gets a CD-ROM with its OVF environment.
	PropertiesISO bool `json:"propertiesIso,omitempty"`
	// Existing says the VM exists: a disk import adds its disk to it.
	Existing bool `json:"existing,omitempty"`
}

// ImportDisk is one disk of an imported VM.
type ImportDisk struct {
	// Name is the disk's name on the VM (disk0 when empty, disk1...).
	Name   string `json:"name,omitempty"`
	Size   Size   `json:"size"` // 0: the image's size
	Bus    string `json:"bus"`
	File   string `json:"file,omitempty"` // "" for a blank disk
	Format string `json:"format,omitempty"`
}

// ImportNIC is one NIC of an imported VM.
type ImportNIC struct {
	Network   string `json:"network,omitempty"` // the package's network
	PortGroup Ref    `json:"portGroup"`
	Model     string `json:"model"`
}

// ImportOption is a deployment option of a package.
type ImportOption struct {
	ID          string `json:"id"`
	Label       string `json:"label,omitempty"`
	Description string `json:"description,omitempty"`
	Default     bool   `json:"default,omitempty"`
}

// ImportProperty is a product property and the value the guest gets.
type ImportProperty struct {
	Key              string `json:"key"`
	Label            string `json:"label,omitempty"`
	Description      string `json:"description,omitempty"`
	Type             string `json:"type"`
	Value            string `json:"value"`
	Password         bool   `json:"password,omitempty"`
	UserConfigurable bool   `json:"userConfigurable,omitempty"`
}

// ImportResult is the result of a finished vm.import task.
type ImportResult struct {
	VMs []Ref `json:"vms"`
	// Disk is the disk a disk import added to an existing VM.
	Disk     string   `json:"disk,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// ExportRequest is the body of POST /api/v1/vms/{vm}/export.
type ExportRequest struct {
	Format  string `json:"format,omitempty"`  // ova (default) or ovf
	Version string `json:"version,omitempty"` // OVF 1.0 (default) or 2.0
}

// ExportResult is the result of a finished vm.export task: the package's
// files, to download from /api/v1/exports/{id}.
type ExportResult struct {
	ID      string         `json:"id"`
	Format  string         `json:"format"`
	Version string         `json:"version"`
	Files   []UploadedFile `json:"files"` // descriptor, manifest, disks, in package order
}
