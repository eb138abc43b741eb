package cmdutil

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// Group makes a noun command: its verbs are subcommands. It checks -o for
// all of them before any work, and names an unknown verb instead of
// printing help and exiting 0, as cobra would.
func Group(g *Globals, use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{
		Use:                        use,
		Aliases:                    aliases,
		Short:                      short,
		Args:                       cobra.ArbitraryArgs,
		SuggestionsMinimumDistance: 2,
		PersistentPreRunE:          func(*cobra.Command, []string) error { return g.CheckOutput() },
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + strings.Join(s, " or ") + "?"
			}
			return fmt.Errorf("%s (see %s --help)", msg, cmd.CommandPath())
		},
	}
}

// ExactArgs is cobra.ExactArgs with the usage line in the error, as the
// root command silences usage.
func ExactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return fmt.Errorf("%s: %v; usage: %s", cmd.CommandPath(), err, cmd.UseLine())
		}
		return nil
	}
}
