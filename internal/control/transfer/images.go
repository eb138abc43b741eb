package transfer

import (
	"context"
	"fmt"
	"io"
	"path"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
)

// imageDir is where an image's files live on its datastore.
func imageDir(name string) string { return path.Join("images", name) }

// NewImage checks an image create request and returns the record to
// store, in phase uploading: its files come next, uploaded.
func (s *Service) NewImage(ctx context.Context, req api.ImageCreateRequest) (*api.Image, error) {
	err := inventory.ValidateCommon("image", req.Name, req.Labels, req.Description)
	if err == nil && req.Type != api.ImageKernel && req.Type != api.ImageDisk {
		err = api.Errorf(api.ErrInvalid, "image type must be %s or %s, got %q", api.ImageKernel, api.ImageDisk, req.Type)
	}
	if err == nil && len(req.Cmdline) > 4096 {
		err = api.Errorf(api.ErrInvalid, "kernel command line is %d bytes long; the limit is 4096", len(req.Cmdline))
	}
	if err == nil {
		err = api.ValidateText("kernel command line", req.Cmdline)
	}
	if err == nil {
		err = s.st.Cache.Sync(ctx)
	}
	if err != nil {
		return nil, err
	}
	ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", req.Name, err)
	}
	return &api.Image{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec:     api.ImageSpec{Datastore: api.Ref{ID: ds.GetMeta().ID}, Type: req.Type, Cmdline: req.Cmdline, Description: req.Description},
		Status:   api.ImageStatus{Phase: api.ImageUploading},
	}, nil
}

// UploadImageFile sends file of image img (size bytes of body; size < 0:
// not known) straight to a host that reaches the image's datastore. It
// returns the change to record in the image: the file, and the phase.
func (s *Service) UploadImageFile(ctx context.Context, img *api.Image, file string, body io.Reader, size int64) (func(api.Object) error, error) {
	if !slices.Contains(api.ImageFiles(img.Spec.Type), file) {
		return nil, api.Errorf(api.ErrInvalid, "a %s image has files %v, not %q", img.Spec.Type, api.ImageFiles(img.Spec.Type), file)
	}
	if size < 0 {
		return nil, api.Errorf(api.ErrInvalid, "upload needs a Content-Length")
	}
	if n := len(s.imageUsers(img.Metadata.ID)); n > 0 {
		return nil, api.Errorf(api.ErrConflict, "image %s is used by %d VMs; upload a new image instead", img.Metadata.Name, n)
	}
	h, err := s.hostReaching(img.Spec.Datastore.ID)
	if err != nil {
		return nil, err
	}
	rel := path.Join(imageDir(img.Metadata.Name), file)
	res, err := s.hosts.PutFile(ctx, hosts.TargetOf(h), img.Spec.Datastore.ID, rel, body, size, file == "disk")
	if err != nil {
		return nil, fmt.Errorf("upload %s of image %s: %w", file, img.Metadata.Name, err)
	}
	return func(o api.Object) error {
		im := o.(*api.Image)
		files := slices.DeleteFunc(im.Status.Files, func(f api.ImageFile) bool { return f.Name == file })
		im.Status.Files = append(files, api.ImageFile{Name: file, Path: rel, SizeBytes: api.Size(res.SizeBytes), SHA256: res.SHA256})
		if file == "disk" {
			im.Status.Format, im.Status.VirtualSize = res.Format, api.Size(res.VirtualSize)
		}
		im.Status.Phase = api.ImageReady
		for _, need := range api.ImageFiles(im.Spec.Type) {
			if imageFile(im, need) == nil {
				im.Status.Phase = api.ImageUploading
			}
		}
		return nil
	}, nil
}

func imageFile(im *api.Image, name string) *api.ImageFile {
	for i := range im.Status.Files {
		if im.Status.Files[i].Name == name {
			return &im.Status.Files[i]
		}
	}
	return nil
}

// imageUsers lists the VMs made from an image.
func (s *Service) imageUsers(id string) []string {
	var names []string
	state.Each(s.st, func(vm *api.VM) {
		if vm.Spec.Image.ID == id {
			names = append(names, vm.Metadata.Name)
		}
	})
	slices.Sort(names)
	return names
}

// DeleteImageFiles removes the files of an image no VM uses, before its
// record goes.
func (s *Service) DeleteImageFiles(ctx context.Context, img *api.Image) error {
	if users := s.imageUsers(img.Metadata.ID); len(users) > 0 {
		return api.Errorf(api.ErrConflict, "cannot delete image %s: VMs use it: %v", img.Metadata.Name, inventory.FirstN(users, 5))
	}
	if len(img.Status.Files) == 0 {
		return nil
	}
	h, err := s.hostReaching(img.Spec.Datastore.ID)
	if err == nil {
		err = s.hosts.DeleteFile(ctx, hosts.TargetOf(h), img.Spec.Datastore.ID, imageDir(img.Metadata.Name))
	}
	if err != nil {
		return fmt.Errorf("delete the files of image %s: %w", img.Metadata.Name, err)
	}
	return nil
}
