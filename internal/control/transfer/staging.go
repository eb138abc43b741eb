package transfer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/ovf"
)

// Imports and exports work in staging folders on a datastore
// (.vdc-staging/<id>), through a host that reaches it. An ID names its
// datastore (the first 36 characters), so the folder needs no record of
// its own: an upload is a folder the client fills, an export one it
// empties.
var stagingIDRE = regexp.MustCompile(`^([0-9a-f-]{36})-([0-9a-f]{16})$`)

func newStagingID(dsID string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return dsID + "-" + hex.EncodeToString(b)
}

// stagingHost resolves a staging ID to its datastore and a connected host
// that reaches it.
func (s *Service) stagingHost(id string) (*api.Datastore, *api.Host, error) {
	m := stagingIDRE.FindStringSubmatch(id)
	if m == nil {
		return nil, nil, api.Errorf(api.ErrNotFound, "no upload or export %q", id)
	}
	ds, ok := state.Get[*api.Datastore](s.st, m[1])
	if !ok {
		return nil, nil, api.Errorf(api.ErrNotFound, "no upload or export %q (its datastore is gone)", id)
	}
	h, err := s.hostReaching(m[1])
	if err != nil {
		return nil, nil, err
	}
	return ds, h, nil
}

// hostReaching picks a connected host that reaches all the datastores
// given, to do file work on it.
func (s *Service) hostReaching(dsIDs ...string) (*api.Host, error) {
	dsIDs = slices.Compact(slices.Sorted(slices.Values(dsIDs)))
	var best *api.Host
	state.Each(s.st, func(h *api.Host) {
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
			if ds, ok := state.Get[*api.Datastore](s.st, id); ok {
				names[i] = ds.Metadata.Name
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

// CreateUpload names a new staging folder on the datastore asked for (or
// the only shared one) for a client to upload a package into.
func (s *Service) CreateUpload(ctx context.Context, req api.UploadRequest) (api.Upload, error) {
	if err := s.st.Cache.Sync(ctx); err != nil {
		return api.Upload{}, err
	}
	ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared || req.Datastore != "" })
	if err == nil {
		_, err = s.hostReaching(ds.GetMeta().ID)
	}
	if err != nil {
		return api.Upload{}, fmt.Errorf("upload: %w", err)
	}
	return api.Upload{ID: newStagingID(ds.GetMeta().ID), Datastore: api.Ref{ID: ds.GetMeta().ID, Name: ds.GetMeta().Name}}, nil
}

// UploadFile sends one file of a package (size bytes of body; size < 0:
// not known) to a host that reaches the upload's datastore, which checks
// it as it comes (an OVA's tar entries, sizes, digests).
func (s *Service) UploadFile(ctx context.Context, id, name string, body io.Reader, size int64) (api.UploadedFile, error) {
	if err := s.st.Cache.Sync(ctx); err != nil {
		return api.UploadedFile{}, err
	}
	if name == "" || ovf.CheckHref(name) != nil || path.Clean(name) != name {
		return api.UploadedFile{}, api.Errorf(api.ErrInvalid, "upload: bad file name %q (a relative path inside the package)", name)
	}
	if size < 0 {
		return api.UploadedFile{}, api.Errorf(api.ErrInvalid, "upload needs a Content-Length")
	}
	ds, h, err := s.stagingHost(id)
	if err != nil {
		return api.UploadedFile{}, err
	}
	res, err := s.hosts.StagingPut(ctx, hosts.TargetOf(h), ds.Metadata.ID, id, name, body, size)
	if err != nil {
		return api.UploadedFile{}, fmt.Errorf("upload %s: %w", name, err)
	}
	return api.UploadedFile{Name: res.Name, Size: api.Size(res.Size), SHA256: res.SHA256}, nil
}

// DeleteStaging removes an upload or an export.
func (s *Service) DeleteStaging(ctx context.Context, id string) error {
	if err := s.st.Cache.Sync(ctx); err != nil {
		return err
	}
	ds, h, err := s.stagingHost(id)
	if err != nil {
		return err
	}
	return s.hosts.StagingDelete(ctx, hosts.TargetOf(h), ds.Metadata.ID, id)
}

// dropStaging removes a task's staging folder, if a host still reaches it.
func (s *Service) dropStaging(ctx context.Context, staging, dsID string) {
	if _, h, err := s.stagingHost(staging); err == nil {
		if err := s.hosts.StagingDelete(ctx, hosts.TargetOf(h), dsID, staging); err != nil {
			s.log.Warn("cannot remove a staging folder", "staging", staging, "err", err)
		}
	}
}
