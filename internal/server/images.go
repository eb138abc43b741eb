package server

import (
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
)

// imageDir is where an image's files live on its datastore.
func imageDir(name string) string { return path.Join("images", name) }

// POST /api/v1/images: the image record; its files come next, uploaded.
func (s *Server) createImage(w http.ResponseWriter, r *http.Request) {
	var req api.ImageCreateRequest
	if !decode(w, r, &req) {
		return
	}
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
		err = s.cache.Sync(r.Context())
	}
	if err != nil {
		fail(w, err)
		return
	}
	ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
	if err != nil {
		fail(w, fmt.Errorf("image %s: %w", req.Name, err))
		return
	}
	s.createInline(w, r, &api.Image{
		Metadata: api.ObjectMeta{Name: req.Name, Labels: req.Labels},
		Spec:     api.ImageSpec{Datastore: api.Ref{ID: ds.GetMeta().ID}, Type: req.Type, Cmdline: req.Cmdline, Description: req.Description},
		Status:   api.ImageStatus{Phase: api.ImageUploading},
	})
}

// hostReaching picks a connected host that reaches all the datastores
// given, to do file work on it.
func (s *Server) hostReaching(dsIDs ...string) (*api.Host, error) {
	dsIDs = slices.Compact(slices.Sorted(slices.Values(dsIDs)))
	var best *api.Host
	s.cache.Each(api.KindHost, func(o api.Object) {
		h := o.(*api.Host)
		if h.Status.Connection != api.HostConnected || best != nil {
			return
		}
		for _, id := range dsIDs {
			if !slices.ContainsFunc(h.Status.Datastores, func(r api.Ref) bool { return r.ID == id }) {
				return
			}
		}
		best = h
	})
	if best == nil {
		names := make([]string, len(dsIDs))
		for i, id := range dsIDs {
			names[i] = id
			if o, ok := s.cache.Get(api.KindDatastore, id); ok {
				names[i] = o.GetMeta().Name
			}
		}
		what := "datastore " + names[0]
		if len(names) > 1 {
			what = "datastores " + strings.Join(names, " and ")
		}
		return nil, api.Errorf(api.ErrConflict, "no connected host reaches %s", what)
	}
	return best, nil
}

// PUT /api/v1/images/{name}/files/{file}: the body is the file. It goes
// straight to a host that reaches the image's datastore.
func (s *Server) uploadImageFile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	file := r.PathValue("file")
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	o, err := s.inv.Lookup(api.KindImage, r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	img := o.(*api.Image)
	if !slices.Contains(api.ImageFiles(img.Spec.Type), file) {
		fail(w, api.Errorf(api.ErrInvalid, "a %s image has files %v, not %q", img.Spec.Type, api.ImageFiles(img.Spec.Type), file))
		return
	}
	if r.ContentLength < 0 {
		fail(w, api.Errorf(api.ErrInvalid, "upload needs a Content-Length"))
		return
	}
	if n := len(s.imageUsers(img.Metadata.ID)); n > 0 {
		fail(w, api.Errorf(api.ErrConflict, "image %s is used by %d VMs; upload a new image instead", img.Metadata.Name, n))
		return
	}
	h, err := s.hostReaching(img.Spec.Datastore.ID)
	if err != nil {
		fail(w, err)
		return
	}
	rel := path.Join(imageDir(img.Metadata.Name), file)
	res, err := s.agents.PutFile(ctx, hosts.TargetOf(h), img.Spec.Datastore.ID, rel, r.Body, r.ContentLength, file == "disk")
	if err != nil {
		fail(w, fmt.Errorf("upload %s of image %s: %w", file, img.Metadata.Name, err))
		return
	}
	s.update(w, r, api.KindImage, func(o api.Object) error {
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
	})
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
func (s *Server) imageUsers(id string) []string {
	var names []string
	s.cache.Each(api.KindVM, func(o api.Object) {
		if vm := o.(*api.VM); vm.Spec.Image.ID == id {
			names = append(names, vm.Metadata.Name)
		}
	})
	slices.Sort(names)
	return names
}

// DELETE /api/v1/images/{name}: the record and its files, if no VM uses it.
func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	o, err := s.inv.Lookup(api.KindImage, r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	img := o.(*api.Image)
	if users := s.imageUsers(img.Metadata.ID); len(users) > 0 {
		fail(w, api.Errorf(api.ErrConflict, "cannot delete image %s: VMs use it: %v", img.Metadata.Name, inventory.FirstN(users, 5)))
		return
	}
	if len(img.Status.Files) > 0 {
		h, err := s.hostReaching(img.Spec.Datastore.ID)
		if err == nil {
			err = s.agents.DeleteFile(ctx, hosts.TargetOf(h), img.Spec.Datastore.ID, imageDir(img.Metadata.Name))
		}
		if err != nil {
			fail(w, fmt.Errorf("delete the files of image %s: %w", img.Metadata.Name, err))
			return
		}
	}
	s.remove(w, r, api.KindImage)
}
