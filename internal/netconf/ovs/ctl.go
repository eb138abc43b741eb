package ovs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ctl runs the OVS tools against this backend's own daemons: the
// database socket and the control sockets are in dir, and OVS_RUNDIR
// points there so that ovs-ofctl finds a bridge's management socket
// (dir/BRIDGE.mgmt) by the bridge's name.
type ctl struct {
	dir string
}

// cmdTimeout bounds one OVS tool run; a daemon that does not answer in
// that time is as good as dead.
const cmdTimeout = 20 * time.Second

func (c ctl) dbSocket() string    { return filepath.Join(c.dir, "db.sock") }
func (c ctl) db() string          { return "unix:" + c.dbSocket() }
func (c ctl) vswitchdCtl() string { return filepath.Join(c.dir, "ovs-vswitchd.ctl") }
func (c ctl) ovsdbCtl() string    { return filepath.Join(c.dir, "ovsdb-server.ctl") }

func (c ctl) env() []string {
	return []string{"OVS_RUNDIR=" + c.dir, "OVS_DBDIR=" + c.dir, "OVS_LOGDIR=" + c.dir, "OVS_SYSCONFDIR=" + c.dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
}

// run runs an OVS tool and returns its standard output; the error names
// the command line and carries what the tool wrote to stderr.
func (c ctl) run(ctx context.Context, stdin []byte, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = c.env()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, ctx.Err())
		}
		return out.String(), &cmdError{cmd: name + " " + strings.Join(args, " "), msg: msg, err: err}
	}
	return out.String(), nil
}

type cmdError struct {
	cmd, msg string
	err      error
}

func (e *cmdError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("%s: %v", e.cmd, e.err)
	}
	return fmt.Sprintf("%s: %v: %s", e.cmd, e.err, e.msg)
}

func (e *cmdError) Unwrap() error { return e.err }

// exitCode is the exit status of a tool whose run failed, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// vsctl runs ovs-vsctl on the backend's database. It waits for
// ovs-vswitchd to apply the change (its default), so a port added is a
// port realized when it returns.
func (c ctl) vsctl(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--db=" + c.db(), "--timeout=" + strconv.Itoa(int(cmdTimeout/time.Second)-2)}, args...)
	return c.run(ctx, nil, "ovs-vsctl", full...)
}

// ofctl runs ovs-ofctl with OpenFlow 1.3 (meters, goto_table).
func (c ctl) ofctl(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, nil, "ovs-ofctl", append([]string{"-O", "OpenFlow13"}, args...)...)
}

// appctl runs ovs-appctl against the backend's ovs-vswitchd.
func (c ctl) appctl(ctx context.Context, args ...string) (string, error) {
	return c.run(ctx, nil, "ovs-appctl", append([]string{"-t", c.vswitchdCtl(), "--timeout=5"}, args...)...)
}

// Values in OVSDB's JSON notation, as `ovs-vsctl --format=json
// --data=json list` prints them.

// ovsMap decodes ["map", [[k, v], ...]] into a map of strings.
func ovsMap(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var pair []json.RawMessage
	if json.Unmarshal(raw, &pair) != nil || len(pair) != 2 {
		return out
	}
	var kv [][]json.RawMessage
	if json.Unmarshal(pair[1], &kv) != nil {
		return out
	}
	for _, e := range kv {
		if len(e) == 2 {
			out[atom(e[0])] = atom(e[1])
		}
	}
	return out
}

// ovsSet decodes a set (["set", [...]] or a single atom) into strings.
func ovsSet(raw json.RawMessage) []string {
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) == nil && len(arr) == 2 {
		var tag string
		if json.Unmarshal(arr[0], &tag) == nil && tag == "set" {
			var elems []json.RawMessage
			_ = json.Unmarshal(arr[1], &elems)
			out := make([]string, 0, len(elems))
			for _, e := range elems {
				out = append(out, atom(e))
			}
			return out
		}
	}
	return []string{atom(raw)}
}

// atom decodes a string, a number, a boolean or ["uuid", "..."].
func atom(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) == nil && len(arr) == 2 {
		return atom(arr[1])
	}
	return strings.TrimSpace(string(raw))
}

// ovsInt decodes an optional integer column: 0 when empty.
func ovsInt(raw json.RawMessage) int {
	set := ovsSet(raw)
	if len(set) != 1 {
		return 0
	}
	n, _ := strconv.Atoi(set[0])
	return n
}

// table is one `list` answer: a row per record, by column name.
type table []map[string]json.RawMessage

// listTables runs `list` on each of tables, with its columns, in one
// ovs-vsctl run (one consistent snapshot of the database).
func (c ctl) listTables(ctx context.Context, tables map[string][]string, order []string) (map[string]table, error) {
	args := []string{"--format=json", "--data=json"}
	for _, t := range order {
		args = append(args, "--", "--columns="+strings.Join(tables[t], ","), "list", t)
	}
	out, err := c.vsctl(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("read the Open vSwitch database: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	res := map[string]table{}
	for _, t := range order {
		var ans struct {
			Data     [][]json.RawMessage `json:"data"`
			Headings []string            `json:"headings"`
		}
		if err := dec.Decode(&ans); err != nil {
			return nil, fmt.Errorf("read the Open vSwitch database: decode the %s table: %w", t, err)
		}
		var rows table
		for _, d := range ans.Data {
			row := map[string]json.RawMessage{}
			for i, h := range ans.Headings {
				if i < len(d) {
					row[h] = d[i]
				}
			}
			rows = append(rows, row)
		}
		res[t] = rows
	}
	return res, nil
}

// quote is a string as ovs-vsctl reads a value: double-quoted, with
// C-like escapes, so that no character in it is taken as syntax.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// mapArg is a whole map column value for ovs-vsctl set: {k="v",...}.
func mapArg(m map[string]string) string {
	keys := sortedKeys(m)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, quote(k)+"="+quote(m[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
