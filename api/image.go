package api

// Image types.
const (
	// ImageKernel is a kernel and an initrd that boot without a disk (the
	// test guest).
	ImageKernel = "kernel"
	// ImageDisk is a bootable disk (qcow2, raw...) VMs are made from.
	ImageDisk = "disk"
)

// Image phases.
const (
	ImageUploading = "uploading"
	ImageReady     = "ready"
)

// Image is something VMs are made from, stored on a datastore under
// images/<name>/.
type Image struct {
	Metadata ObjectMeta  `json:"metadata"`
	Spec     ImageSpec   `json:"spec"`
	Status   ImageStatus `json:"status"`
}

type ImageSpec struct {
	Datastore   Ref    `json:"datastore"`
	Type        string `json:"type"`              // kernel or disk
	Cmdline     string `json:"cmdline,omitempty"` // kernel images: the kernel command line
	Description string `json:"description,omitempty"`
}

type ImageStatus struct {
	Phase string      `json:"phase"`
	Files []ImageFile `json:"files,omitempty"`
	// For disk images: the format found in the file and its virtual size.
	Format      string `json:"format,omitempty"`
	VirtualSize Size   `json:"virtualSize,omitempty"`
}

// ImageFile is one uploaded file of an image.
type ImageFile struct {
	Name      string `json:"name"` // kernel, initrd or disk
	Path      string `json:"path"` // relative to the datastore
	SizeBytes Size   `json:"sizeBytes"`
	SHA256    string `json:"sha256"`
}

// ImageCreateRequest is the body of POST /api/v1/images; the files follow
// with PUT /api/v1/images/{name}/files/{kernel|initrd|disk}.
type ImageCreateRequest struct {
	Name        string            `json:"name"`
	Datastore   string            `json:"datastore,omitempty"` // default: the only datastore
	Type        string            `json:"type"`
	Cmdline     string            `json:"cmdline,omitempty"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Files each image type needs.
func ImageFiles(typ string) []string {
	if typ == ImageKernel {
		return []string{"kernel", "initrd"}
	}
	return []string{"disk"}
}

func (o *Image) GetMeta() *ObjectMeta { return &o.Metadata }
func (o *Image) Kind() string         { return KindImage }
