package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/version"
)

// versionInfo is what `vdc version -o json` prints.
type versionInfo struct {
	Client      string       `json:"client"`
	Server      *api.Version `json:"server,omitempty"`
	ServerError string       `json:"serverError,omitempty"`
}

func newVersionCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of the CLI and, when it answers, of the server",
		Example: "  vdc version\n  vdc version -o json",
		Args:    cmdutil.ExactArgs(0),
		PreRunE: func(*cobra.Command, []string) error { return g.CheckOutput() },
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := versionInfo{Client: version.String()}
			// An unreachable server is part of the answer, not a failure: the
			// command must work before any server exists.
			if c, err := g.Client(); err != nil {
				info.ServerError = err.Error()
			} else {
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				defer cancel()
				if v, err := c.Version(ctx); err != nil {
					info.ServerError = fmt.Sprintf("%s: %v", c.URL(), err)
				} else {
					info.Server = v
				}
			}
			if g.JSONOutput() {
				return cmdutil.WriteJSON(g.Stdout, info)
			}
			fmt.Fprintf(g.Stdout, "client: %s\n", info.Client)
			if s := info.Server; s != nil {
				leader := s.Leader
				if s.IsLeader {
					leader += " (this server)"
				}
				fmt.Fprintf(g.Stdout, "server: %s\nserver name: %s\nleader: %s\n", cmdutil.Safe(s.Version), cmdutil.Safe(s.Server), cmdutil.Safe(leader))
			} else {
				fmt.Fprintf(g.Stderr, "server: not reachable: %s\n", cmdutil.Safe(info.ServerError))
			}
			return nil
		},
	}
}
