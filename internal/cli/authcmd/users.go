package authcmd

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/pki"
)

// readPassword reads a password: one line of stdin with --password-stdin,
// else from the terminal without echo (asked twice when confirm).
func readPassword(g *cmdutil.Globals, fromStdin bool, prompt string, confirm bool) (string, error) {
	if fromStdin {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("read the password from stdin: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return "", errors.New("no terminal to ask the password on: give it with --password-stdin")
	}
	fmt.Fprint(g.Stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(g.Stderr)
	if err != nil {
		return "", fmt.Errorf("read the password: %w", err)
	}
	if confirm {
		fmt.Fprint(g.Stderr, "Again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(g.Stderr)
		if err != nil || string(again) != string(b) {
			return "", errors.New("the passwords differ")
		}
	}
	return string(b), nil
}

// NewUserCmd is `vdc user`.
func NewUserCmd(g *cmdutil.Globals) *cobra.Command {
	yesNo := func(b bool) string { return map[bool]string{true: "yes", false: "no"}[b] }
	d := &cmdutil.Noun[*api.User]{
		Kind: api.KindUser, Singular: "user", Plural: "users", Use: "user",
		Short: "Manage the users who log in to vdc",
		Columns: func(now time.Time) []cmdutil.Column[*api.User] {
			return []cmdutil.Column[*api.User]{
				{Header: "name", Value: func(o *api.User) string { return o.Metadata.Name }},
				{Header: "full name", Value: func(o *api.User) string { return o.Spec.FullName }},
				{Header: "disabled", Value: func(o *api.User) string { return yesNo(o.Spec.Disabled) }},
				{Header: "age", Value: func(o *api.User) string { return cmdutil.Age(now, o.Metadata.Created) }},
			}
		},
		Info: func(v *cmdutil.InfoView, o *api.User, _ time.Time) {
			v.Add("Name", o.Metadata.Name)
			v.Add("Full name", o.Spec.FullName)
			v.Add("Description", o.Spec.Description)
			v.Add("Disabled", yesNo(o.Spec.Disabled))
		},
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, true)
			full := cmd.Flags().String("full-name", "", "the user's full name")
			stdin := cmd.Flags().Bool("password-stdin", false, "read the password from stdin (else it is asked on the terminal)")
			return func(name string) (any, error) {
				pw, err := readPassword(g, *stdin, "Password for "+name+": ", true)
				return api.UserCreateRequest{Name: name, Password: pw, FullName: *full, Description: m.Description}, err
			}
		},
		CreateExample: "  vdc user create alice --full-name 'Alice A.'\n  printf '%s\\n' \"$PW\" | vdc user create ci --password-stdin",
	}
	set := func(use, short string, req func(cmd *cobra.Command, name string) (api.UserUpdateRequest, error), flags func(*cobra.Command)) *cobra.Command {
		c := &cobra.Command{Use: use + " NAME", Short: short, Args: cmdutil.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				body, err := req(cmd, args[0])
				if err != nil {
					return err
				}
				return g.Apply(cmd.Context(), cmdutil.Change{
					What: use + " user " + args[0],
					Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
						return c.Update(ctx, api.KindUser, args[0], body, 0)
					},
					Done: func(context.Context, *client.Client, *api.Task) string {
						return "user " + args[0] + ": " + use + " done"
					},
				})
			}}
		if flags != nil {
			flags(c)
		}
		return c
	}
	yes, no := true, false
	var stdin bool
	passwd := set("passwd", "Set a user's password (yours too); the user's sessions and tokens end",
		func(cmd *cobra.Command, name string) (api.UserUpdateRequest, error) {
			pw, err := readPassword(g, stdin, "New password for "+name+": ", true)
			return api.UserUpdateRequest{Password: &pw}, err
		}, func(c *cobra.Command) {
			c.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from stdin")
		})
	disable := set("disable", "Disable a user: its sessions and tokens stop working at once",
		func(*cobra.Command, string) (api.UserUpdateRequest, error) {
			return api.UserUpdateRequest{Disabled: &yes}, nil
		}, nil)
	enable := set("enable", "Enable a disabled user again",
		func(*cobra.Command, string) (api.UserUpdateRequest, error) {
			return api.UserUpdateRequest{Disabled: &no}, nil
		}, nil)
	return d.Command(g, passwd, disable, enable)
}

// NewGroupCmd is `vdc group`.
func NewGroupCmd(g *cmdutil.Globals) *cobra.Command {
	d := &cmdutil.Noun[*api.Group]{
		Kind: api.KindGroup, Singular: "group", Plural: "groups", Use: "group",
		Short: "Manage groups of users, which permissions can name together",
		Columns: func(time.Time) []cmdutil.Column[*api.Group] {
			return []cmdutil.Column[*api.Group]{
				{Header: "name", Value: func(o *api.Group) string { return o.Metadata.Name }},
				{Header: "members", Value: func(o *api.Group) string { return strings.Join(o.Spec.Members, ",") }},
			}
		},
		Info: func(v *cmdutil.InfoView, o *api.Group, _ time.Time) {
			v.Add("Name", o.Metadata.Name)
			v.Add("Description", o.Spec.Description)
			v.Add("Members", strings.Join(o.Spec.Members, ", "))
		},
		Create: func(cmd *cobra.Command) func(string) (any, error) {
			m := cmdutil.AddMetaFlags(cmd, false, true)
			members := cmd.Flags().StringSlice("member", nil, "a user in the group (repeat, or comma-separate)")
			return func(name string) (any, error) {
				return api.GroupCreateRequest{Name: name, Members: *members, Description: m.Description}, nil
			}
		},
		CreateExample: "  vdc group create ops --member alice,bob",
	}
	change := func(use, short string, body func(users []string) api.GroupUpdateRequest) *cobra.Command {
		return &cobra.Command{Use: use + " GROUP USER...", Short: short, Args: cobra.MinimumNArgs(2),
			RunE: func(cmd *cobra.Command, args []string) error {
				return g.Apply(cmd.Context(), cmdutil.Change{
					What: use + " " + strings.Join(args[1:], ",") + " in group " + args[0],
					Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
						return c.Update(ctx, api.KindGroup, args[0], body(args[1:]), 0)
					},
					Done: func(context.Context, *client.Client, *api.Task) string { return "group " + args[0] + " changed" },
				})
			}}
	}
	add := change("add", "Add users to a group", func(u []string) api.GroupUpdateRequest { return api.GroupUpdateRequest{Add: u} })
	rm := change("remove", "Remove users from a group", func(u []string) api.GroupUpdateRequest { return api.GroupUpdateRequest{Remove: u} })
	return d.Command(g, add, rm)
}

// NewLoginCmd is `vdc login`: a session for a user, into the client
// config.
func NewLoginCmd(g *cmdutil.Globals) *cobra.Command {
	var user, caFile, fingerprint string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "login https://SERVER:7443 --user NAME",
		Short: "Log in as a user: the client config gets a session token (it expires when unused)",
		Long: `Log in as a user and write the client config (--config, $VDC_CONFIG or the
default) with a session token, readable by you only. The server's CA comes
from --ca-file, from the config when it names the same server, or is
trusted by its SHA-256 fingerprint (--ca-fingerprint, as vdc up prints it).`,
		Example: "  vdc login https://vdc.example:7443 --user alice --ca-fingerprint 3f2a...",
		Args:    cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := g.Config
			if path == "" {
				path = client.DefaultConfigPath()
			}
			cfg := client.Config{Server: strings.TrimRight(args[0], "/")}
			ca, err := loginCA(cmd.Context(), path, cfg.Server, caFile, fingerprint)
			if err != nil {
				return err
			}
			cfg.CA = ca
			pw, err := readPassword(g, stdin, "Password for "+user+" at "+cfg.Server+": ", false)
			if err != nil {
				return err
			}
			c, err := client.New(cfg)
			if err != nil {
				return err
			}
			var s api.Session
			err = c.Do(cmd.Context(), client.Request{Method: http.MethodPost, Path: "/sessions", Body: api.LoginRequest{User: user, Password: pw}}, &s)
			if err != nil {
				return fmt.Errorf("log in to %s as %s: %w", cfg.Server, user, err)
			}
			cfg.Token = s.Token
			if err := cfg.Save(path); err != nil {
				return err
			}
			fmt.Fprintf(g.Stdout, "Logged in to %s as %s (session %s, until %s unless used). Client config: %s\n",
				cfg.Server, cmdutil.SafeText(user), s.ID, s.Expires.Local().Format(time.DateTime), path)
			return nil
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "the user to log in as")
	cmd.Flags().StringVar(&caFile, "ca-file", "", "the datacenter CA's certificate (PEM)")
	cmd.Flags().StringVar(&fingerprint, "ca-fingerprint", "", "trust the server's CA if its SHA-256 fingerprint is this")
	cmd.Flags().BoolVar(&stdin, "password-stdin", false, "read the password from stdin")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}

// loginCA is the PEM of the CA to trust for server.
func loginCA(ctx context.Context, path, server, caFile, fingerprint string) (string, error) {
	if caFile != "" {
		b, err := os.ReadFile(caFile)
		if err != nil {
			return "", fmt.Errorf("read the CA: %w", err)
		}
		return string(b), nil
	}
	if old, err := client.LoadConfig(path); err == nil && strings.TrimRight(old.Server, "/") == server && old.CA != "" && fingerprint == "" {
		return old.CA, nil
	}
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("server %q: give https://HOST:PORT", server)
	}
	d := tls.Dialer{Config: pki.Harden(&tls.Config{InsecureSkipVerify: true})} // checked below, by fingerprint
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return "", fmt.Errorf("reach %s: %w", server, err)
	}
	defer conn.Close()
	chain := conn.(*tls.Conn).ConnectionState().PeerCertificates
	root := chain[len(chain)-1]
	sum := sha256.Sum256(root.Raw)
	got := hex.EncodeToString(sum[:])
	if fingerprint == "" {
		return "", fmt.Errorf("the CA of %s is not known here: its fingerprint is %s; if that is the one vdc up printed, log in again with --ca-fingerprint %s (or give --ca-file)",
			server, got, got)
	}
	if !strings.EqualFold(strings.ReplaceAll(fingerprint, ":", ""), got) {
		return "", fmt.Errorf("the CA of %s has fingerprint %s, not %s: refusing to send a password to it", server, got, fingerprint)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})), nil
}

// NewSessionCmd is `vdc session`: your login sessions.
func NewSessionCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := cmdutil.Group(g, "session", "List or end your login sessions")
	ls := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List your sessions", Args: cmdutil.ExactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			var l api.List[api.Token]
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodGet, Path: "/sessions"}, &l); err != nil {
				return fmt.Errorf("list sessions: %w", err)
			}
			return cmdutil.PrintList(g, l.Items, []cmdutil.Column[api.Token]{
				{Header: "id", Value: func(t api.Token) string { return t.ID }},
				{Header: "user", Value: func(t api.Token) string { return t.User }},
				{Header: "created", Value: func(t api.Token) string { return t.Created.Local().Format(time.DateTime) }},
				{Header: "expires", Value: func(t api.Token) string { return t.Expires.Local().Format(time.DateTime) }},
			})
		}}
	rm := &cobra.Command{Use: "rm ID", Aliases: []string{"delete"}, Short: "End a session: its token stops working at once", Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.Client()
			if err != nil {
				return err
			}
			if err := c.Do(cmd.Context(), client.Request{Method: http.MethodDelete, Path: "/sessions/" + url.PathEscape(args[0])}, nil); err != nil {
				return fmt.Errorf("end session %s: %w", args[0], err)
			}
			fmt.Fprintf(g.Stdout, "Session %s ended.\n", args[0])
			return nil
		}}
	cmd.AddCommand(ls, rm)
	return cmd
}
