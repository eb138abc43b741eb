package inventorycmd

import (
	"fmt"
	"github.com/vdc-project/vdc/client"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// vdc token: API tokens, what the CLI's config (and every API client)
// authenticates with.
func NewAPITokenCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "token", "Manage API tokens (create one per user or script; delete one to revoke it at once)")
	cmd.AddCommand(newAPITokenCreateCmd(g), newAPITokenListCmd(g), newAPITokenDeleteCmd(g), newAPITokenRotateCmd(g))
	return cmd
}

func newAPITokenCreateCmd(g *cmdutil.Globals) *cobra.Command {
	var req api.TokenCreateRequest
	var expires string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Make an API token and print its secret (shown this once)",
		Long: `Make an API token and print it. Clients send it as
"Authorization: Bearer TOKEN"; for the CLI, put it in a client config
(the "token" field). The server keeps only a hash: the secret cannot be shown
again. 'vdc token rm ID' revokes it.`,
		Example: "  vdc token create --description 'backup script'\n  vdc token create --user ci --role ReadOnly --expires 30d",
		Args:    cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if expires != "" {
				d, err := cmdutil.ParseDays(expires)
				if err != nil {
					return fmt.Errorf("--expires: %w", err)
				}
				req.ExpiresSeconds = int64(d.Seconds())
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return fmt.Errorf("create token: %w", err)
			}
			if g.JSONOutput() {
				return cmdutil.WriteJSON(g.Stdout, t)
			}
			fmt.Fprintln(g.Stdout, t.Token)
			// The rest goes to stderr so that TOKEN=$(vdc token create) works.
			fmt.Fprintf(g.Stderr, "API token %s for user %s. Keep it secret; delete it with: vdc token rm %s\n",
				t.ID, cmdutil.SafeText(t.User), t.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&req.User, "user", "", "who the token acts as (default: you)")
	cmd.Flags().StringVar(&req.Description, "description", "", "what the token is for")
	cmd.Flags().StringVar(&expires, "expires", "", "end the token after this long (30d, 12h; default: never)")
	cmd.Flags().StringVar(&req.Role, "role", "", "narrow the token to this role's privileges (within its user's permissions)")
	return cmd
}

func newAPITokenListCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List API tokens (their IDs, not their secrets)",
		Args:    cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			ts, err := c.ListTokens(cmd.Context())
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			return cmdutil.PrintList(g, ts, []cmdutil.Column[api.Token]{
				{Header: "id", Value: func(t api.Token) string { return t.ID }},
				{Header: "user", Value: func(t api.Token) string { return t.User }},
				{Header: "created", Value: func(t api.Token) string { return t.Created.Local().Format(time.DateTime) }},
				{Header: "expires", Value: func(t api.Token) string { return expiry(t.Expires) }},
				{Header: "kind", Value: func(t api.Token) string { return map[bool]string{true: "session", false: "token"}[t.Session] }},
				{Header: "role", Value: func(t api.Token) string { return t.Role }, Optional: true},
				{Header: "description", Value: func(t api.Token) string { return t.Description }, Optional: true},
			})
		},
	}
}

func newAPITokenDeleteCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"delete"},
		Short:   "Delete an API token: requests with it fail from now on",
		Args:    cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			t, err := c.DeleteToken(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("delete token %s: %w", args[0], err)
			}
			fmt.Fprintf(g.Stdout, "Deleted API token %s of user %s.\n", t.ID, cmdutil.SafeText(t.User))
			return nil
		},
	}
}

func expiry(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}

func newAPITokenRotateCmd(g *cmdutil.Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate",
		Short: "Replace the token of your client config by a new one: the old one stops working",
		Long: `Replace the token of your client config (the admin token that vdc up wrote,
for instance) by a new one, and write it into the config. The old token stops
working at once, wherever it was copied.`,
		Args: cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := g.Config
			if path == "" {
				path = client.DefaultConfigPath()
			}
			cfg, err := client.LoadConfig(path)
			if err != nil {
				return err
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			var t api.Token
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/tokens/rotate"}, &t); err != nil {
				return fmt.Errorf("rotate the token of %s: %w", path, err)
			}
			cfg.Token = t.Token
			if err := cfg.Save(path); err != nil {
				return fmt.Errorf("token rotated to %s, but %w: keep this new token, the old one is gone: %s", t.ID, err, t.Token)
			}
			fmt.Fprintf(g.Stdout, "Token rotated: %s now holds token %s of user %s; the old one no longer works.\n", path, t.ID, cmdutil.SafeText(t.User))
			return nil
		},
	}
}
