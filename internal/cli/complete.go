package cli

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// Shell completion of names (vdc completion bash|zsh|fish|powershell
// prints the script): VM names after vdc vm start, hosts after --host,
// snapshot names after the VM of a snapshot command, and so on, read from
// the server with the client config. A server that does not answer within
// completionTimeout gives no completions, quietly: Tab never hangs or
// prints errors into the command line.

const completionTimeout = 2 * time.Second

// Kinds of names a completion offers besides inventory kinds.
const (
	completeTemplates = "templates"
	completeSnapshots = "snapshots" // of the VM given as the first argument
	completeDisks     = "disks"     // of the VM given as the first argument
	completeNICs      = "nics"      // of the VM given as the first argument
)

// argKinds says what each placeholder of a command's Use line names; NAME
// is the name of the noun the command belongs to.
var argKinds = map[string]string{"VM": api.KindVM, "SRC": api.KindVM, "SNAPSHOT": completeSnapshots, "DISK": completeDisks,
	"NIC": completeNICs, "PORTGROUP": api.KindPortGroup, "FOLDER": api.KindFolder}

// nounKinds are the kinds named by NAME under the noun commands that are
// no cmdutil.Noun; a Noun's command says its kind itself, in its
// cmdutil.KindAnnotation.
var nounKinds = map[string]string{"export": api.KindVM}

// flagKinds are the flags that take a name, in any command.
var flagKinds = map[string]string{
	"host": api.KindHost, "datastore": api.KindDatastore, "cluster": api.KindCluster, "vm": api.KindVM,
	"from-template": completeTemplates, "image": api.KindImage, "nic": api.KindPortGroup,
	"switch": api.KindSwitch, "portgroup": api.KindPortGroup, "folder": api.KindFolder,
}

// flagValues are the flags that take one of a few words.
var flagValues = map[string][]string{
	"ha-priority": {"high", "medium", "low", "disabled"},
	"vnc":         {"on", "off"},
	"power":       {api.PowerOn, api.PowerOff, api.PowerSuspended, api.PowerUnknown},
	"output":      {"table", "json"},
	"backend":     {api.BackendBridge, api.BackendOVS},
	"link":        {"up", "down"},
}

// registerCompletions gives every command of the tree completion of the
// names its arguments and flags take.
func registerCompletions(g *cmdutil.Globals, root *cobra.Command) {
	var walk func(cmd *cobra.Command, nounKind string)
	walk = func(cmd *cobra.Command, nounKind string) {
		if cmd.Parent() == root {
			nounKind = nounKinds[cmd.Name()]
			if k, ok := cmd.Annotations[cmdutil.KindAnnotation]; ok {
				nounKind = k
			}
		}
		if cmd.ValidArgsFunction == nil && cmd.Runnable() {
			var kinds []string
			for _, tok := range strings.Fields(cmd.Use)[1:] {
				if strings.HasPrefix(tok, "-") || strings.HasPrefix(tok, "[") || strings.HasPrefix(tok, "(") {
					break
				}
				tok, _, _ = strings.Cut(tok, "[") // PORTGROUP[,model=MODEL]
				kind := argKinds[tok]
				if tok == "NAME" {
					kind = nounKind
				}
				kinds = append(kinds, kind)
			}
			if slices.ContainsFunc(kinds, func(k string) bool { return k != "" }) {
				cmd.ValidArgsFunction = completeArgs(g, kinds)
			}
		}
		for name, kind := range flagKinds {
			if cmd.LocalNonPersistentFlags().Lookup(name) != nil {
				_ = cmd.RegisterFlagCompletionFunc(name, completeFlag(g, kind))
			}
		}
		for name, words := range flagValues {
			if cmd.Flags().Lookup(name) != nil && (cmd == root || cmd.LocalFlags().Lookup(name) != nil) {
				_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(words, cobra.ShellCompDirectiveNoFileComp))
			}
		}
		for _, sub := range cmd.Commands() {
			walk(sub, nounKind)
		}
	}
	walk(root, "")
}

// completeArgs completes the i-th argument with names of kinds[i].
func completeArgs(g *cmdutil.Globals, kinds []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= len(kinds) || kinds[len(args)] == "" {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		vm := ""
		if len(args) > 0 {
			vm = args[0]
		}
		return namesOf(cmd.Context(), g, kinds[len(args)], vm, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func completeFlag(g *cmdutil.Globals, kind string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		names := namesOf(cmd.Context(), g, kind, "", toComplete)
		if kind == api.KindImage {
			// --image also takes the path of a disk file.
			return names, cobra.ShellCompDirectiveDefault
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}

// completionItem is what completion reads of any listed object.
type completionItem struct {
	Metadata api.ObjectMeta `json:"metadata"`
	Spec     struct {
		Template  bool             `json:"template"`
		Path      string           `json:"path"` // a folder's, which names it
		Snapshots []api.VMSnapshot `json:"snapshots"`
		Disks     []api.VMDisk     `json:"disks"`
		NICs      []api.VMNIC      `json:"nics"`
	} `json:"spec"`
}

// namesOf returns the names of a kind that start with prefix; nil when
// the server cannot be asked.
func namesOf(ctx context.Context, g *cmdutil.Globals, kind, vm, prefix string) []string {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	c, err := client.FromFile(g.Config)
	if err != nil {
		return nil
	}
	switch kind {
	case completeSnapshots, completeDisks, completeNICs:
		var one completionItem
		if vm == "" || c.Do(ctx, client.Request{Method: http.MethodGet, Path: "/" + api.KindVM + "/" + url.PathEscape(vm)}, &one) != nil {
			return nil
		}
		var out []string
		switch kind {
		case completeDisks:
			for _, d := range one.Spec.Disks {
				out = append(out, d.Name)
			}
		case completeNICs:
			for _, n := range one.Spec.NICs {
				out = append(out, n.Name)
			}
		default:
			for _, s := range one.Spec.Snapshots {
				if !s.Hidden {
					out = append(out, s.Name)
				}
			}
		}
		return withPrefix(out, prefix)
	}
	templates := kind == completeTemplates
	if templates {
		kind = api.KindVM
	}
	var l struct {
		Items []completionItem `json:"items"`
	}
	if err := c.Do(ctx, client.Request{Method: http.MethodGet, Path: "/" + kind}, &l); err != nil {
		return nil
	}
	var out []string
	for _, it := range l.Items {
		if kind == api.KindVM && it.Spec.Template != templates {
			continue
		}
		if kind == api.KindFolder {
			out = append(out, it.Spec.Path)
			continue
		}
		out = append(out, it.Metadata.Name)
	}
	return withPrefix(out, prefix)
}

func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
