package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/vdc-project/vdc/api"
)

func vmPath(vm string, rest ...string) string {
	p := "/vms/" + url.PathEscape(vm)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func (c *Client) task(ctx context.Context, method, path string, body any) (*api.Task, error) {
	var t api.Task
	err := c.Do(ctx, Request{Method: method, Path: path, Body: body, Idempotent: true}, &t)
	return &t, err
}

// CreateSnapshot snapshots a VM.
func (c *Client) CreateSnapshot(ctx context.Context, vm string, req api.SnapshotCreateRequest) (*api.Task, error) {
	return c.task(ctx, http.MethodPost, vmPath(vm, "snapshots"), req)
}

// Snapshots lists a VM's snapshots; each names its parent.
func (c *Client) Snapshots(ctx context.Context, vm string) ([]api.VMSnapshot, error) {
	var l api.List[api.VMSnapshot]
	err := c.Do(ctx, Request{Method: http.MethodGet, Path: vmPath(vm, "snapshots")}, &l)
	return l.Items, err
}

// RevertSnapshot puts a VM back to a snapshot.
func (c *Client) RevertSnapshot(ctx context.Context, vm, snapshot string) (*api.Task, error) {
	return c.task(ctx, http.MethodPost, vmPath(vm, "snapshots", snapshot, "revert"), nil)
}

// DeleteSnapshot deletes a snapshot, merging its data away.
func (c *Client) DeleteSnapshot(ctx context.Context, vm, snapshot string) (*api.Task, error) {
	return c.task(ctx, http.MethodDelete, vmPath(vm, "snapshots", snapshot), nil)
}

// Clone clones a VM (or a snapshot of it, or a template).
func (c *Client) Clone(ctx context.Context, vm string, req api.CloneRequest) (*api.Task, error) {
	return c.task(ctx, http.MethodPost, vmPath(vm, "clone"), req)
}

// MarkTemplate makes a VM a template, or (on false) a VM again.
func (c *Client) MarkTemplate(ctx context.Context, vm string, on bool) (*api.Task, error) {
	verb := "mark-template"
	if !on {
		verb = "unmark-template"
	}
	return c.task(ctx, http.MethodPost, vmPath(vm, verb), nil)
}

// Templates lists the templates.
func (c *Client) Templates(ctx context.Context) ([]*api.VM, error) {
	var l api.List[*api.VM]
	err := c.Do(ctx, Request{Method: http.MethodGet, Path: "/templates"}, &l)
	return l.Items, err
}

// AddDisk adds a disk to a VM.
func (c *Client) AddDisk(ctx context.Context, vm string, req api.DiskAddRequest) (*api.Task, error) {
	return c.task(ctx, http.MethodPost, vmPath(vm, "disks"), req)
}

// ResizeDisk grows a VM's disk.
func (c *Client) ResizeDisk(ctx context.Context, vm, disk string, size api.Size) (*api.Task, error) {
	return c.task(ctx, http.MethodPatch, vmPath(vm, "disks", disk), api.DiskResizeRequest{Size: size})
}

// RemoveDisk removes a VM's disk.
func (c *Client) RemoveDisk(ctx context.Context, vm, disk string) (*api.Task, error) {
	return c.task(ctx, http.MethodDelete, vmPath(vm, "disks", disk), nil)
}

// AddNIC adds a NIC to a VM, hot-plugged when it runs.
func (c *Client) AddNIC(ctx context.Context, vm string, req api.NICAddRequest) (*api.Task, error) {
	return c.task(ctx, http.MethodPost, vmPath(vm, "nics"), req)
}

// UpdateNIC moves a VM's NIC to another port group or sets its link.
func (c *Client) UpdateNIC(ctx context.Context, vm, nic string, req api.NICUpdateRequest) (*api.Task, error) {
	return c.task(ctx, http.MethodPatch, vmPath(vm, "nics", nic), req)
}

// RemoveNIC removes a VM's NIC, unplugged when it runs.
func (c *Client) RemoveNIC(ctx context.Context, vm, nic string) (*api.Task, error) {
	return c.task(ctx, http.MethodDelete, vmPath(vm, "nics", nic), nil)
}

// ImportImage has a host fetch a disk image into a datastore.
func (c *Client) ImportImage(ctx context.Context, req api.ImageImportRequest) (*api.Task, error) {
	return c.task(ctx, http.MethodPost, "/images/import", req)
}
