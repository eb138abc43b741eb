package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

var eventTypes = []string{api.EventTask, api.EventVMPower, api.EventHostConnection, api.EventCreated, api.EventDeleted}

// eventKinds maps the nouns users type to the kinds events carry.
var eventKinds = map[string]string{
	"vm": api.KindVM, "host": api.KindHost, "datacenter": api.KindDatacenter, "dc": api.KindDatacenter,
	"cluster": api.KindCluster, "datastore": api.KindDatastore, "ds": api.KindDatastore,
	"portgroup": api.KindPortGroup, "pg": api.KindPortGroup, "task": api.KindTask, "folder": api.KindFolder,
}

func newEventsCmd(g *cmdutil.Globals) *cobra.Command {
	var q client.EventQuery
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Follow the events of the datacenter as they happen",
		Long: `Follow events (tasks, power changes, host connections, objects created and
deleted), one line each, until Ctrl-C. With -o json, one JSON object per line.`,
		Example: "  vdc events\n  vdc events --type vm.power --type host.connection\n  vdc events --kind vm -o json",
		Args:    cmdutil.ExactArgs(0),
		PreRunE: func(*cobra.Command, []string) error { return g.CheckOutput() },
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := normalizeEventQuery(&q); err != nil {
				return err
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			return followEvents(ctx, c, q, g.Stderr, func(e api.Event) error { return printEvent(g.Stdout, e, g.JSONOutput()) })
		},
	}
	cmd.Flags().StringArrayVar(&q.Types, "type", nil, "only events of this type: "+strings.Join(eventTypes, ", ")+" (repeatable)")
	cmd.Flags().StringVar(&q.Kind, "kind", "", "only events about objects of this kind: vm, host, cluster, datastore, portgroup, datacenter, task")
	cmd.Flags().StringVar(&q.ID, "id", "", "only events about the object with this ID")
	return cmd
}

// normalizeEventQuery checks --type and accepts "vm" as well as "vms" for --kind.
func normalizeEventQuery(q *client.EventQuery) error {
	for _, t := range q.Types {
		if !slices.Contains(eventTypes, t) {
			return fmt.Errorf("--type %q: use one of %s", t, strings.Join(eventTypes, ", "))
		}
	}
	if q.Kind == "" {
		return nil
	}
	if k, ok := eventKinds[q.Kind]; ok {
		q.Kind = k
		return nil
	}
	for _, k := range eventKinds {
		if q.Kind == k {
			return nil
		}
	}
	return fmt.Errorf("--kind %q: use vm, host, cluster, datastore, portgroup, datacenter or task", q.Kind)
}

// followEvents streams events until ctx ends. The server drops a stream
// that falls behind and a server may restart; both end the stream, so it
// reconnects and resumes after the last event it saw. A refusal from the
// server (bad filter, no access) ends it for good.
func followEvents(ctx context.Context, c *client.Client, q client.EventQuery, warn io.Writer, fn func(api.Event) error) error {
	streamed := false // some stream worked: later failures are outages
	for {
		start := time.Now()
		var fnErr error // e.g. stdout closed: no point reconnecting
		err := c.Events(ctx, q, func(e api.Event) error {
			streamed = true
			q.After = e.Seq
			fnErr = fn(e)
			return fnErr
		})
		if ctx.Err() != nil {
			return nil // Ctrl-C: the normal end
		}
		if fnErr != nil {
			return fnErr
		}
		var apiErr *api.Error
		failedAtOnce := err != nil && !streamed && time.Since(start) < 5*time.Second
		if errors.As(err, &apiErr) || failedAtOnce {
			return fmt.Errorf("follow events: %w", err)
		}
		streamed = true
		if err != nil {
			fmt.Fprintf(warn, "event stream lost (%s); reconnecting\n", cmdutil.Safe(err.Error()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// printEvent writes one event as one line: time, type, message.
func printEvent(w io.Writer, e api.Event, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := fmt.Fprintln(w, eventLine(e))
	return err
}

func eventLine(e api.Event) string {
	msg := e.Message
	if msg == "" {
		msg = strings.TrimSpace(cmdutil.KindName(e.Kind) + " " + e.Name)
		if e.From != "" || e.To != "" {
			msg += ": " + e.From + " → " + e.To
		}
	}
	// The server's task message says only the state; a running task's
	// progress is what someone following events wants to see.
	if t := e.Task; t != nil && t.State == api.TaskRunning && (t.Progress > 0 || t.Message != "") {
		msg += fmt.Sprintf(" (%d%%", t.Progress)
		if t.Message != "" {
			msg += ", " + t.Message
		}
		msg += ")"
	}
	return fmt.Sprintf("%s  %-15s  %s", e.Time.Local().Format("15:04:05.000"), cmdutil.Safe(e.Type), cmdutil.Safe(msg))
}
