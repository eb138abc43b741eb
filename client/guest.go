package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
)

// Exec runs a program in a VM's guest through its guest agent.
func (c *Client) Exec(ctx context.Context, vm string, req api.ExecRequest) (*api.ExecResult, error) {
	var res api.ExecResult
	err := c.Do(ctx, Request{Method: http.MethodPost, Path: "/vms/" + url.PathEscape(vm) + "/exec", Body: req}, &res)
	return &res, err
}

// ConsoleLog returns up to the last n bytes of a VM's serial console output.
func (c *Client) ConsoleLog(ctx context.Context, vm string, n int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/v1/vms/%s/console/log?bytes=%d", c.base, url.PathEscape(vm), n), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the vdc server at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp)
	}
	return io.ReadAll(resp.Body)
}

// Console attaches to a VM's serial console: a websocket whose binary
// messages carry the console's bytes both ways.
func (c *Client) Console(ctx context.Context, vm string) (*websocket.Conn, error) {
	return c.stream(ctx, vm, "console")
}

// VNC attaches to a VM's VNC display: a websocket whose binary messages
// carry the RFB protocol both ways, for a VNC viewer.
func (c *Client) VNC(ctx context.Context, vm string) (*websocket.Conn, error) {
	return c.stream(ctx, vm, "vnc")
}

func (c *Client) stream(ctx context.Context, vm, what string) (*websocket.Conn, error) {
	u := "wss" + strings.TrimPrefix(c.base, "https") + "/api/v1/vms/" + url.PathEscape(vm) + "/" + what
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: c.ws,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + c.token}},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, decodeError(resp)
		}
		return nil, fmt.Errorf("%s of vm %s: %w", what, vm, err)
	}
	ws.SetReadLimit(1 << 20)
	return ws, nil
}

// UploadImageFile sends one file of an image (kernel, initrd or disk).
func (c *Client) UploadImageFile(ctx context.Context, image, file string, body io.Reader, size int64) (*api.Task, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/api/v1/images/"+url.PathEscape(image)+"/files/"+url.PathEscape(file), body)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the vdc server at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, decodeError(resp)
	}
	var t api.Task
	return &t, jsonDecode(resp.Body, &t)
}

// Progress wraps the body of an upload of size bytes (a progress bar
// labelled label) and returns the body to send and what to call once it
// is sent.
type Progress func(label string, body io.Reader, size int64) (io.Reader, func())

// CreateImageFromFiles creates the image req describes and uploads its
// files (api.ImageFiles of its type) from the local paths in files;
// progress, when not nil, wraps each upload.
func (c *Client) CreateImageFromFiles(ctx context.Context, req api.ImageCreateRequest, files map[string]string, progress Progress) (*api.Image, error) {
	if _, err := c.Create(ctx, api.KindImage, req); err != nil {
		return nil, fmt.Errorf("create image %s: %w", req.Name, err)
	}
	for _, name := range api.ImageFiles(req.Type) {
		if err := c.UploadImageFileFrom(ctx, req.Name, name, files[name], progress); err != nil {
			return nil, err
		}
	}
	return Get[*api.Image](ctx, c, api.KindImage, req.Name)
}

// UploadImageFileFrom sends one file of an image from the local file
// path; progress, when not nil, wraps the upload.
func (c *Client) UploadImageFileFrom(ctx context.Context, image, name, path string, progress Progress) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("upload %s of image %s: %w", name, image, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var body io.Reader = f
	if progress != nil {
		var done func()
		body, done = progress(image+" "+name, f, fi.Size())
		defer done()
	}
	if _, err := c.UploadImageFile(ctx, image, name, body, fi.Size()); err != nil {
		return fmt.Errorf("upload %s of image %s: %w", name, image, err)
	}
	return nil
}
