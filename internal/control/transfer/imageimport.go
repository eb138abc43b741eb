package transfer

import (
	"context"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/store"
)

type imageImportParams struct {
	Source string `json:"source"`
	SHA256 string `json:"sha256,omitempty"`
}

var sha256Digest = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)

// ImportImage records the image, in phase uploading, with an image.import
// task that has a host fetch the file into the image's folder.
func (s *Service) ImportImage(ctx context.Context, req api.ImageImportRequest) (*api.Task, error) {
	err := inventory.ValidateCommon("image", req.Name, req.Labels, req.Description)
	if err == nil && req.SHA256 != "" && !sha256Digest.MatchString(req.SHA256) {
		err = api.Errorf(api.ErrInvalid, "sha256 must be 64 hex digits")
	}
	if err == nil {
		err = s.st.Cache.Sync(ctx)
	}
	if err != nil {
		return nil, err
	}
	if _, taken := state.Lookup[*api.Image](s.st, req.Name); taken {
		return nil, api.Errorf(api.ErrConflict, "an image named %q already exists", req.Name)
	}
	ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared })
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", req.Name, err)
	}
	if err := s.validateImageSource(req.Source, inventory.DatacenterOf(ds)); err != nil {
		return nil, err
	}
	img := &api.Image{
		Metadata: api.ObjectMeta{ID: store.NewID(), Name: req.Name, Labels: req.Labels},
		Spec:     api.ImageSpec{Datastore: api.Ref{ID: ds.GetMeta().ID}, Type: api.ImageDisk, Description: req.Description},
		Status:   api.ImageStatus{Phase: api.ImageUploading},
	}
	t := tasks.New(ctx, api.OpImageImport, img, imageImportParams{Source: req.Source, SHA256: req.SHA256})
	return s.tasks.Submit(ctx, s.st.Store.Txn().Create(img), t)
}

// validateImageSource accepts an http(s) URL, or a file in a datastore
// of the image's datacenter: a host reads it as root, and nothing outside
// the datastores is for the API to read (or to tell the size of).
func (s *Service) validateImageSource(src, dc string) error {
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

// runImageImport has a host fetch an image's disk; whatever fails removes
// the image and what was fetched.
func (s *Service) runImageImport(ctx context.Context, t *tasks.Run) (any, error) {
	var p imageImportParams
	if err := t.Params(&p); err != nil {
		return nil, err
	}
	img, err := state.Read[*api.Image](ctx, s.st, t.Task.Target.ID)
	if err != nil {
		return nil, err
	}
	if img.Status.Phase == api.ImageReady {
		return img.Status, nil
	}
	undo := func(err error) error {
		cctx, cancel := t.CleanupCtx()
		defer cancel()
		if h, herr := s.hostReaching(img.Spec.Datastore.ID); herr == nil {
			_ = s.hosts.DeleteFile(cctx, hosts.TargetOf(h), img.Spec.Datastore.ID, imageDir(img.Metadata.Name))
		}
		_, _ = s.st.Store.Txn().Delete(img).Commit(cctx)
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
	f, err := s.fetchImage(ctx, t, img, h, p)
	if err != nil {
		return nil, undo(err)
	}
	rel := path.Join(imageDir(img.Metadata.Name), "disk")
	t.Stage(api.KindImage, img.Metadata.ID, func(o api.Object) error {
		im := o.(*api.Image)
		im.Status.Files = slices.DeleteFunc(im.Status.Files, func(x api.ImageFile) bool { return x.Name == "disk" })
		im.Status.Files = append(im.Status.Files, api.ImageFile{Name: "disk", Path: rel, SizeBytes: api.Size(f.SizeBytes), SHA256: f.SHA256})
		im.Status.Format, im.Status.VirtualSize, im.Status.Phase = f.Format, api.Size(f.VirtualSize), api.ImageReady
		return nil
	})
	return api.ImageStatus{Phase: api.ImageReady, Format: f.Format, VirtualSize: api.Size(f.VirtualSize)}, nil
}

// fetchImage has host h fetch the image's disk, and says what it fetched.
func (s *Service) fetchImage(ctx context.Context, t *tasks.Run, img *api.Image, h *api.Host, p imageImportParams) (*agent.FileResult, error) {
	rel := path.Join(imageDir(img.Metadata.Name), "disk")
	t.Progress(ctx, 2, "fetching "+p.Source+" on host "+h.Metadata.Name)
	job, err := s.hosts.Import(ctx, hosts.TargetOf(h), img.Spec.Datastore.ID, agent.ImportRequest{Path: rel, Source: p.Source, SHA256: p.SHA256})
	if err != nil {
		return nil, err
	}
	j, err := s.inv.FollowJob(ctx, t, h, job, func(j agent.Job) (int, string) {
		if j.Total <= 0 {
			return 5, fmt.Sprintf("fetched %s", api.Size(j.Done))
		}
		return 5 + int(90*j.Done/j.Total), fmt.Sprintf("fetched %s of %s", api.Size(j.Done), api.Size(j.Total))
	})
	if err != nil {
		return nil, err
	}
	if j.File == nil {
		return nil, fmt.Errorf("the host did not say what it fetched")
	}
	return j.File, nil
}
