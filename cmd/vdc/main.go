// Command vdc is the whole of vdc: server, host agent, all-in-one
// datacenter and CLI.
package main

import (
	"os"

	"github.com/vdc-project/vdc/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
