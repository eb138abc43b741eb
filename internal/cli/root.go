// Package cli is the vdc command line: `vdc <noun> <verb>`, a client of the
// REST API only, plus the commands that run the server and agent processes.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/version"
)

// globals are the flags every command shares.
type globals struct {
	config string // client config file
	output string // table or json
	async  bool   // return the task ID instead of waiting
	stdout io.Writer
	stderr io.Writer
}

// NewRoot builds the vdc command tree.
func NewRoot() *cobra.Command {
	return newRoot(&globals{stdout: os.Stdout, stderr: os.Stderr})
}

// newRoot builds the tree writing to g's outputs (tests capture them).
func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "vdc",
		Short:         "vdc runs a virtual datacenter: hosts, VMs, storage and networks",
		Version:       version.String(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "client config file (default $VDC_CONFIG, else <user config dir>/vdc/config.json)")
	root.PersistentFlags().StringVarP(&g.output, "output", "o", "table", "output format of list and info commands: table or json")
	root.AddCommand(
		newUpCmd(g), newServerCmd(g), newAgentCmd(g),
		newVMCmd(g), newHostCmd(g), newImageCmd(g), newTemplateCmd(g),
		newDatacenterCmd(g), newClusterCmd(g), newDatastoreCmd(g), newPortGroupCmd(g),
		newTaskCmd(g), newEventsCmd(g), newVersionCmd(g), newBenchCmd(g), newAPITokenCmd(g),
		newImportCmd(g), newExportCmd(g), newWaitCmd(g),
	)
	registerCompletions(g, root)
	return root
}

// Execute runs the CLI and returns the process exit code.
func Execute() int {
	root := NewRoot()
	if err := root.ExecuteContext(context.Background()); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			return int(code)
		}
		printError(os.Stderr, err)
		return 1
	}
	return 0
}

// client opens the API client from the config file.
func (g *globals) client() (*client.Client, error) {
	return client.FromFile(g.config)
}

// printError prints a command's error; its text is mostly the server's,
// made safe to print.
func printError(w io.Writer, err error) {
	fmt.Fprintln(w, "vdc:", safeText(err.Error()))
}
