// Package cmdutil is what every noun of the vdc command line is written
// with: the flags all commands share and the API client they open
// (Globals), output (tables, info views, JSON, and the escaping of text
// that came from the server), state-changing calls that follow their task
// to the end (Globals.Apply), flag helpers, and the common verbs of
// inventory nouns (Noun).
//
// # Writing a noun
//
// A noun (vm, host, image...) lives in a package of its own under
// internal/cli (vmcmd, inventorycmd, transfercmd...) that imports this
// one, never another noun's package. It exports one constructor per
// top-level command,
//
//	func NewSwitchCmd(g *cmdutil.Globals) *cobra.Command
//
// which internal/cli's root adds to the tree (cli.newRoot); that is the
// only line outside the noun's package that a new noun needs. (A flag
// that takes names of a kind, as --host does, is completed from the
// flagKinds table in internal/cli/complete.go: a new one goes there.)
//
// An inventory noun, one with ls, info, create, update and delete, fills a
// Noun and calls Noun.Command with any extra verbs:
//
//	d := &cmdutil.Noun[*api.Switch]{
//		Kind: api.KindSwitch, Singular: "switch", Plural: "switches", Use: "switch",
//		Short:   "Manage distributed switches",
//		Columns: switchColumns, // func(now time.Time) []cmdutil.Column[*api.Switch]
//		Info:    switchInfo,    // func(v *cmdutil.InfoView, o *api.Switch, now time.Time)
//		Create:  switchCreateFlags, Update: switchUpdateFlags,
//	}
//	return d.Command(g, newSwitchUplinkCmd(g))
//
// The shell completes the NAME of its verbs with the names of Kind (see
// KindAnnotation). Other nouns and verbs are plain cobra commands: Group
// makes the noun (it refuses an unknown verb and checks -o), ExactArgs
// checks the arguments, and a verb that changes something calls AddAsync
// on its command and Globals.Apply with a Change. Everything printed that
// came from the server goes through Safe (a cell, a line) or SafeText
// (several lines); Column, InfoView and Apply's summary line do it
// already. Lists and info views print with PrintList and PrintInfo, which
// honour -o json.
//
// Tests of a noun's flags and output live in its package; tests that run
// the assembled command line (vdc ARGS...) live in internal/cli.
package cmdutil
