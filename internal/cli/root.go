// Package cli is the vdc command line: `vdc <noun> <verb>`, a client of the
// REST API only, plus the commands that run the server and agent processes.
//
// This package builds the tree: the root command and its global flags, the
// task, events and version commands, and shell completion of names. The
// nouns live in subpackages (vmcmd, inventorycmd, transfercmd, proccmd),
// written with cmdutil, whose doc says how to add one.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/internal/cli/authcmd"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/cli/inventorycmd"
	"github.com/vdc-project/vdc/internal/cli/netcmd"
	"github.com/vdc-project/vdc/internal/cli/proccmd"
	"github.com/vdc-project/vdc/internal/cli/transfercmd"
	"github.com/vdc-project/vdc/internal/cli/vmcmd"
	"github.com/vdc-project/vdc/internal/version"
)

// NewRoot builds the vdc command tree.
func NewRoot() *cobra.Command {
	return newRoot(&cmdutil.Globals{Stdout: os.Stdout, Stderr: os.Stderr})
}

// newRoot builds the tree writing to g's outputs (tests capture them).
func newRoot(g *cmdutil.Globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "vdc",
		Short:         "vdc runs a virtual datacenter: hosts, VMs, storage and networks",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.Config, "config", "", "client config file (default $VDC_CONFIG, else <user config dir>/vdc/config.json)")
	root.PersistentFlags().StringVarP(&g.Output, "output", "o", cmdutil.OutputTable, "output format of list and info commands: table or json")
	host := inventorycmd.NewHostCmd(g)
	host.AddCommand(netcmd.NewHostNetworkCmd(g))
	root.AddCommand(
		proccmd.NewUpCmd(g), proccmd.NewServerCmd(g), proccmd.NewAgentCmd(g),
		vmcmd.NewVMCmd(g), host, transfercmd.NewImageCmd(g), vmcmd.NewTemplateCmd(g),
		inventorycmd.NewDatacenterCmd(g), inventorycmd.NewFolderCmd(g), inventorycmd.NewClusterCmd(g), inventorycmd.NewDatastoreCmd(g), netcmd.NewPortGroupCmd(g), netcmd.NewSwitchCmd(g),
		newTaskCmd(g), newEventsCmd(g), newVersionCmd(g), proccmd.NewBenchCmd(g), inventorycmd.NewAPITokenCmd(g),
		transfercmd.NewImportCmd(g), transfercmd.NewExportCmd(g), proccmd.NewWaitCmd(g),
		authcmd.NewRoleCmd(g), authcmd.NewPermissionCmd(g), authcmd.NewUserCmd(g), authcmd.NewGroupCmd(g),
		authcmd.NewLoginCmd(g), authcmd.NewSessionCmd(g), authcmd.NewAuditCmd(g),
	)
	registerCompletions(g, root)
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	root := NewRoot()
	if err := root.ExecuteContext(context.Background()); err != nil {
		var code cmdutil.ExitCode
		if errors.As(err, &code) {
			return int(code)
		}
		printError(os.Stderr, err)
		return 1
	}
	return 0
}

// printError prints a command's error; its text is mostly the server's,
// made safe to print.
func printError(w io.Writer, err error) {
	fmt.Fprintln(w, "vdc:", cmdutil.SafeText(err.Error()))
}
