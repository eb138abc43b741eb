package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
