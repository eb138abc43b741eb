package cmdutil

import (
	"fmt"
	"io"

	"github.com/vdc-project/vdc/client"
)

// Globals are the flags every command shares, and where commands write.
// The root command binds Config and Output to --config and -o; a verb
// that changes something binds Async to its --async (AddAsync).
type Globals struct {
	Config string // client config file (--config); "" for the default
	Output string // OutputTable or OutputJSON (-o)
	Async  bool   // return the task ID instead of waiting (--async)
	Stdout io.Writer
	Stderr io.Writer
}

// Client opens the API client from the client config.
func (g *Globals) Client() (*client.Client, error) {
	return client.FromFile(g.Config)
}

// Values of -o.
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// CheckOutput rejects an unknown -o before a command does any work, so a
// typo never half-runs a command. Group runs it before every verb.
func (g *Globals) CheckOutput() error {
	switch g.Output {
	case OutputTable, OutputJSON:
		return nil
	}
	return fmt.Errorf("unknown output format %q: use -o table or -o json", g.Output)
}

// JSONOutput says whether -o json was given.
func (g *Globals) JSONOutput() bool { return g.Output == OutputJSON }

// ExitCode is an error that only sets the process's exit status (the
// command already said everything): vdc vm exec returns the guest
// command's.
type ExitCode int

func (e ExitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
