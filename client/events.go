package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/vdc-project/vdc/api"
)

// EventQuery filters the event stream.
type EventQuery struct {
	Types []string // api.EventTask, api.EventVMPower...
	Kind  string
	ID    string
	After int64 // resume after this Seq
}

// Events streams events until ctx ends or fn returns an error.
func (c *Client) Events(ctx context.Context, q EventQuery, fn func(api.Event) error) error {
	v := url.Values{}
	if len(q.Types) > 0 {
		v.Set("types", strings.Join(q.Types, ","))
	}
	if q.Kind != "" {
		v.Set("kind", q.Kind)
	}
	if q.ID != "" {
		v.Set("id", q.ID)
	}
	if q.After > 0 {
		v.Set("after", fmt.Sprint(q.After))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/events?"+v.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("open event stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "data: "):
			data.WriteString(strings.TrimPrefix(line, "data: "))
		case line == "" && data.Len() > 0:
			var e api.Event
			if err := json.Unmarshal([]byte(data.String()), &e); err != nil {
				return fmt.Errorf("bad event: %w", err)
			}
			data.Reset()
			if err := fn(e); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return sc.Err()
}
