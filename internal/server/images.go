package server

import (
	"net/http"

	"github.com/vdc-project/vdc/api"
)

// POST /api/v1/images: the image record; its files come next, uploaded.
func (s *Server) createImage(w http.ResponseWriter, r *http.Request) error {
	var req api.ImageCreateRequest
	if err := decode(w, r, &req); err != nil {
		return err
	}
	img, err := s.transfer.NewImage(r.Context(), req)
	if err != nil {
		return err
	}
	return s.createInline(w, r, img)

}

// PUT /api/v1/images/{name}/files/{file}: the body is the file. It goes
// straight to a host that reaches the image's datastore.
func (s *Server) uploadImageFile(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	o, err := s.inv.Lookup(api.KindImage, r.PathValue("name"))
	if err != nil {
		return err
	}
	record, err := s.transfer.UploadImageFile(r.Context(), o.(*api.Image), r.PathValue("file"), r.Body, r.ContentLength)
	if err != nil {
		return err
	}
	return s.update(w, r, api.KindImage, record)

}

// imageFile is the file of an image with this name, if it has it.
func imageFile(im *api.Image, name string) *api.ImageFile {
	for i := range im.Status.Files {
		if im.Status.Files[i].Name == name {
			return &im.Status.Files[i]
		}
	}
	return nil
}

// DELETE /api/v1/images/{name}: the record and its files, if no VM uses it.
func (s *Server) deleteImage(w http.ResponseWriter, r *http.Request) error {
	if err := s.cache.Sync(r.Context()); err != nil {
		return err
	}
	o, err := s.inv.Lookup(api.KindImage, r.PathValue("name"))
	if err != nil {
		return err
	}
	if err := s.transfer.DeleteImageFiles(r.Context(), o.(*api.Image)); err != nil {
		return err
	}
	return s.remove(w, r, api.KindImage)

}
