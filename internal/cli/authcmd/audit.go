package authcmd

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// NewAuditCmd is `vdc audit`: the audit trail.
func NewAuditCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "audit", "Read the audit trail: who did or tried what, from where, when, with which result")
	var user, object, result, since string
	var limit int
	ls := &cobra.Command{
		Use: "ls", Aliases: []string{"list"}, Short: "List audit records, newest first", Args: cmdutil.ExactArgs(0),
		Example: "  vdc audit ls --user alice --since 1h\n  vdc audit ls --result refused --object vms:web1",
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"user": user, "object": object, "result": result, "since": since} {
				if v != "" {
					q.Set(k, v)
				}
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			var l api.List[api.AuditRecord]
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodGet, Path: "/audit", Query: q}, &l); err != nil {
				return fmt.Errorf("read the audit trail: %w", err)
			}
			return cmdutil.PrintList(g, l.Items, []cmdutil.Column[api.AuditRecord]{
				{Header: "time", Value: func(r api.AuditRecord) string { return r.Time.Local().Format(time.DateTime) }},
				{Header: "user", Value: func(r api.AuditRecord) string { return r.User }},
				{Header: "from", Value: func(r api.AuditRecord) string { return r.From }},
				{Header: "action", Value: func(r api.AuditRecord) string { return r.Action }},
				{Header: "object", Value: func(r api.AuditRecord) string { return r.Object }},
				{Header: "result", Value: func(r api.AuditRecord) string { return fmt.Sprintf("%s (%d)", r.Result, r.Status) }},
				{Header: "task", Value: func(r api.AuditRecord) string { return r.Task }, Optional: true},
				{Header: "message", Value: func(r api.AuditRecord) string { return r.Message }, Optional: true},
			})
		},
	}
	fl := ls.Flags()
	fl.StringVar(&user, "user", "", "only this user's requests")
	fl.StringVar(&object, "object", "", "only those on this object (KIND:NAME, as vms:web1)")
	fl.StringVar(&result, "result", "", "only those with this result: ok, refused or failed")
	fl.StringVar(&since, "since", "", "only those since this long ago (1h) or this time (RFC 3339)")
	fl.IntVar(&limit, "limit", 0, "at most this many (default 1000)")
	cmd.AddCommand(ls)
	return cmd
}
