package cmdutil

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
)

// MetaFlags are the flags that name, describe and label an object, shared
// by every create and update.
type MetaFlags struct {
	cmd    *cobra.Command
	update bool
	name   string
	// Description is --description ("" when not given: see Change).
	Description string
	// Labels are the --label flags as given; LabelMap parses them.
	Labels []string
}

// AddMetaFlags adds --label, --description (unless the object has none)
// and, for an update, --name.
func AddMetaFlags(cmd *cobra.Command, update, description bool) *MetaFlags {
	m := &MetaFlags{cmd: cmd, update: update}
	if update {
		cmd.Flags().StringVar(&m.name, "name", "", "new name")
		cmd.Flags().StringArrayVar(&m.Labels, "label", nil, "set a label, key=value; key= removes it (repeatable)")
	} else {
		cmd.Flags().StringArrayVar(&m.Labels, "label", nil, "label, key=value (repeatable)")
	}
	if description {
		cmd.Flags().StringVar(&m.Description, "description", "", "free text description")
	}
	return m
}

// LabelMap parses the --label flags: nil when none was given.
func (m *MetaFlags) LabelMap() (map[string]string, error) {
	return parseLabels(m.Labels, m.update)
}

// MetaChange is what an update changes of the name, description and
// labels; nil fields stay as they are.
type MetaChange struct {
	Name, Description *string
	Labels            map[string]string
}

// Change reads the update flags; "" clears the description. singular
// names the kind in an error about --name ("vm", "port group").
func (m *MetaFlags) Change(singular string) (MetaChange, error) {
	mc := MetaChange{Description: Changed(m.cmd, "description", m.Description)}
	if m.cmd.Flags().Changed("name") {
		if err := api.ValidateName(singular, m.name); err != nil {
			return mc, fmt.Errorf("--name: %w", err)
		}
		mc.Name = &m.name
	}
	var err error
	mc.Labels, err = m.LabelMap()
	return mc, err
}

// Changed points at v if the flag was given, for the optional fields of
// update requests.
func Changed[V any](cmd *cobra.Command, flag string, v V) *V {
	if !cmd.Flags().Changed(flag) {
		return nil
	}
	return &v
}

// parseLabels reads key=value specs. An empty value removes a label in an
// update; a create has nothing to remove, so there it is an error.
func parseLabels(specs []string, update bool) (map[string]string, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(specs))
	for _, s := range specs {
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		switch {
		case !ok:
			return nil, fmt.Errorf("--label %q: want key=value", s)
		case k == "":
			return nil, fmt.Errorf("--label %q: the key is empty", s)
		case v == "" && !update:
			return nil, fmt.Errorf("--label %q: give a value (key= removes a label, in update only)", s)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--label %q: label %q given twice", s, k)
		}
		out[k] = v
	}
	return out, nil
}

// ParseSizeFlag reads a size flag ("512MiB", "10G") and checks it is
// within [lo, hi]; flag names it in errors ("--memory").
func ParseSizeFlag(flag, s string, lo, hi api.Size) (api.Size, error) {
	v, err := api.ParseSize(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", flag, err)
	}
	if v < lo || v > hi {
		return 0, fmt.Errorf("%s must be between %s and %s, got %s", flag, lo, hi, v)
	}
	return v, nil
}

// ParseOnOff reads an on|off flag (true and false too); flag is its name
// without dashes.
func ParseOnOff(flag, v string) (bool, error) {
	switch v {
	case "on", "true":
		return true, nil
	case "off", "false":
		return false, nil
	}
	return false, fmt.Errorf("--%s must be on or off, got %q", flag, v)
}

// SplitSpec splits a flag value "HEAD,key=value,..." (--disk 10G,bus=scsi)
// with only the given keys allowed, each at most once; flag and headName
// say what it is for errors ("--disk", "size").
func SplitSpec(flag, headName, spec string, keys ...string) (head string, opts map[string]string, err error) {
	parts := strings.Split(spec, ",")
	head = strings.TrimSpace(parts[0])
	if head == "" || strings.Contains(head, "=") {
		return "", nil, fmt.Errorf("%s %q: start with the %s, then any key=value", flag, spec, headName)
	}
	opts = map[string]string{}
	for _, p := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		switch {
		case !ok || v == "":
			return "", nil, fmt.Errorf("%s %q: %q is not key=value", flag, spec, p)
		case !slices.Contains(keys, k):
			return "", nil, fmt.Errorf("%s %q: unknown key %q; use %s", flag, spec, k, strings.Join(keys, ", "))
		}
		if _, dup := opts[k]; dup {
			return "", nil, fmt.Errorf("%s %q: %s given twice", flag, spec, k)
		}
		opts[k] = v
	}
	return head, opts, nil
}

// ParseDays reads a duration that may be given in days ("30d") as well
// as Go's units ("12h", "90m").
func ParseDays(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days <= 0 {
			return 0, fmt.Errorf("%q is not a whole number of days", s)
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%q is not a duration (30d, 12h, 90m)", s)
	}
	return d, nil
}
