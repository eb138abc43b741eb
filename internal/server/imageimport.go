package server

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

type imageImportParams struct {
	Source string `json:"source"`
	SHA256 string `json:"sha256,omitempty"`
}

var sha256Digest = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// POST /api/v1/images/import: the image record, in phase uploading, and
// a task that has a host fetch the file into the image's folder.
func (s *Server) importImage(w http.ResponseWriter, r *http.Request) {
	var req api.ImageImportRequest
	if !decode(w, r, &req) {
		return
	}
	err := inventory.ValidateCommon("image", req.Name, req.Labels, req.Description)
	if err == nil && req.SHA256 != "" && !sha256Digest.MatchString(req.SHA256) {
		err = api.Errorf(api.ErrInvalid, "sha256 must be 64 hex digits")
	}
	if err == nil {
		err = s.cache.Sync(r.Context())
	}
	if err != nil {
		fail(w, err)
		return
	}
	if _, taken := s.cache.Lookup(api.KindImage, req.Name); taken {
		fail(w, api.Errorf(api.ErrConflict, "an image named %q already exists", req.Name))
		return
	}
	ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
	if err != nil {
		fail(w, fmt.Errorf("image %s: %w", req.Name, err))
		return
	}
	if err := s.validateImageSource(req.Source, inventory.DatacenterOf(ds)); err != nil {
		fail(w, err)
		return
	}
	img := &api.Image{
		Metadata: api.ObjectMeta{ID: store.NewID(), Name: req.Name, Labels: req.Labels},
		Spec:     api.ImageSpec{Datastore: api.Ref{ID: ds.GetMeta().ID}, Type: api.ImageDisk, Description: req.Description},
		Status:   api.ImageStatus{Phase: api.ImageUploading},
	}
	t := tasks.New(r.Context(), api.OpImageImport, img, imageImportParams{Source: req.Source, SHA256: req.SHA256})
	t, err = s.submitter.Submit(r.Context(), s.store.Txn().Create(img), t)
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// validateImageSource accepts an http(s) URL, or a file in a datastore
// of the image's datacenter: a host reads it as root, and nothing outside
// the datastores is for the API to read (or to tell the size of).
func (s *Server) validateImageSource(src, dc string) error {
	if src == "" {
		return api.Errorf(api.ErrInvalid, "no image source: give an http(s) URL or a file in a datastore")
	}
	if u, err := url.Parse(src); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		if u.Host == "" {
			return api.Errorf(api.ErrInvalid, "image URL %q has no host", src)
		}
		return api.ValidateText("image URL", src)
	}
	_, err := s.inv.CheckHostFile("image source", src, "an http(s) URL or a file in a datastore", "; upload other files (vdc image import FILE uploads a file of its machine)", func(o api.Object) bool { return inventory.DatacenterOf(o) == dc })
	return err
}

func isURL(src string) bool {
	u, err := url.Parse(src)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}

func (s *Server) runImageImport(ctx context.Context, t *tasks.Run) (any, error) {
	var p imageImportParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	o, err := s.store.Get(ctx, api.KindImage, t.Task.Target.ID)
	if err != nil {
		return nil, err
	}
	img := o.(*api.Image)
	if img.Status.Phase == api.ImageReady {
		return img.Status, nil
	}
	undo := func(err error) error {
		cctx, cancel := t.CleanupCtx()
		defer cancel()
		if h, herr := s.hostReaching(img.Spec.Datastore.ID); herr == nil {
			_ = s.agents.DeleteFile(cctx, hosts.TargetOf(h), img.Spec.Datastore.ID, imageDir(img.Metadata.Name))
		}
		_, _ = s.store.Txn().Delete(img).Commit(cctx)
		return fmt.Errorf("import image %s from %s: %w; the image was not kept", img.Metadata.Name, p.Source, err)
	}
	reach := []string{img.Spec.Datastore.ID}
	if !isURL(p.Source) {
		// The host reads the file from its datastore (which may have gone
		// since the request was checked).
		src, ok := s.inv.DatastoreHolding(p.Source, nil)
		if !ok {
			return nil, undo(api.Errorf(api.ErrInvalid, "image source %s is not an http(s) URL or a file in a datastore", p.Source))
		}
		reach = append(reach, src.Metadata.ID)
	}
	h, err := s.hostReaching(reach...)
	if err != nil {
		return nil, undo(err)
	}
	rel := path.Join(imageDir(img.Metadata.Name), "disk")
	t.Progress(ctx, 2, "fetching "+p.Source+" on host "+h.Metadata.Name)
	job, err := s.agents.Import(ctx, hosts.TargetOf(h), img.Spec.Datastore.ID, agent.ImportRequest{Path: rel, Source: p.Source, SHA256: p.SHA256})
	if err != nil {
		return nil, undo(err)
	}
	j, err := s.inv.FollowJob(ctx, t, h, job, func(j agent.Job) (int, string) {
		if j.Total <= 0 {
			return 5, fmt.Sprintf("fetched %s", api.Size(j.Done))
		}
		return 5 + int(90*j.Done/j.Total), fmt.Sprintf("fetched %s of %s", api.Size(j.Done), api.Size(j.Total))
	})
	if err != nil {
		return nil, undo(err)
	}
	f := j.File
	if f == nil {
		return nil, undo(fmt.Errorf("the host did not say what it fetched"))
	}
	t.Stage(api.KindImage, img.Metadata.ID, func(o api.Object) error {
		im := o.(*api.Image)
		im.Status.Files = slices.DeleteFunc(im.Status.Files, func(x api.ImageFile) bool { return x.Name == "disk" })
		im.Status.Files = append(im.Status.Files, api.ImageFile{Name: "disk", Path: rel, SizeBytes: api.Size(f.SizeBytes), SHA256: f.SHA256})
		im.Status.Format, im.Status.VirtualSize, im.Status.Phase = f.Format, api.Size(f.VirtualSize), api.ImageReady
		return nil
	})
	return api.ImageStatus{Phase: api.ImageReady, Format: f.Format, VirtualSize: api.Size(f.VirtualSize)}, nil
}
