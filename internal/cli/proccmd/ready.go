package proccmd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

// hostReady says whether a host can take work: connected, heard from
// now, and reaching its datastores (reported from its second heartbeat
// on: the first one learns which to check). why says what it lacks.
func hostReady(h *api.Host, datastores int, lv *liveness) (ok bool, why string) {
	switch {
	case h == nil:
		return false, "has not joined yet"
	case h.Status.LastHeartbeat.IsZero():
		return false, "joined, no heartbeat yet"
	case h.Status.Connection != api.HostConnected:
		return false, h.Status.Connection
	case !lv.live(h):
		return false, "shown connected, waiting for its next heartbeat"
	case datastores > 0 && len(h.Status.Datastores) == 0:
		return false, "connected, has not reported its datastores yet"
	}
	return true, ""
}

// liveness tells the hosts heard from now from those whose status may be
// from before a server restart (a server shows a host connected for a
// while after it starts, without having heard from it): a host is live
// once its last heartbeat is after since (on this machine's clock: the
// server's, under vdc up), or changed while we watched.
type liveness struct {
	since time.Time
	first map[string]time.Time // the first heartbeat time seen, by host ID
}

func (l *liveness) live(h *api.Host) bool {
	hb := h.Status.LastHeartbeat
	if !l.since.IsZero() && hb.After(l.since) {
		return true
	}
	if l.first == nil {
		l.first = map[string]time.Time{}
	}
	f, ok := l.first[h.Metadata.ID]
	if !ok {
		l.first[h.Metadata.ID] = hb
		return false
	}
	return !hb.Equal(f)
}

// readiness is how far a datacenter is from taking work.
type readiness struct {
	url, leader  string
	ready, hosts []*api.Host
	waiting      []string // "host-2: disconnected"
}

// checkReady reads where the server stands: it answers, it has a leader,
// and which hosts are ready. err says what is not there yet.
func checkReady(ctx context.Context, c *client.Client, lv *liveness) (readiness, error) {
	r := readiness{url: c.URL()}
	v, err := c.Version(ctx)
	if err != nil {
		return r, fmt.Errorf("the server at %s does not answer: %w", c.URL(), err)
	}
	if v.Leader == "" {
		return r, fmt.Errorf("the server at %s has no leader yet", c.URL())
	}
	r.leader = v.Leader
	if r.hosts, err = client.List[*api.Host](ctx, c, api.KindHost, nil); err != nil {
		return r, fmt.Errorf("list hosts: %w", err)
	}
	dss, err := client.List[*api.Datastore](ctx, c, api.KindDatastore, nil)
	if err != nil {
		return r, fmt.Errorf("list datastores: %w", err)
	}
	for _, h := range r.hosts {
		if ok, why := hostReady(h, len(dss), lv); ok {
			r.ready = append(r.ready, h)
		} else {
			r.waiting = append(r.waiting, h.Metadata.Name+": "+why)
		}
	}
	return r, nil
}

func NewWaitCmd(g *cmdutil.Globals) *cobra.Command {
	wait := cmdutil.Group(g, "wait", "Wait for something to be so")
	var timeout time.Duration
	var hosts int
	ready := &cobra.Command{
		Use:   "ready",
		Short: "Wait until the server answers, has a leader and its hosts are ready",
		Long: `Wait until the datacenter can take work: the client config is there, the
server answers and has elected a leader, and --hosts hosts (default: every
host in the inventory, at least one) are connected and reach their
datastores. For scripts: 'vdc up &' then 'vdc wait ready' before the next
command. Exits non-zero, saying what is missing, after --timeout.`,
		Example: `  vdc wait ready
  vdc wait ready --hosts 3 --timeout 5m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout must be positive, got %s", timeout)
			}
			if hosts < 0 {
				return fmt.Errorf("--hosts must be 1 or more, got %d", hosts)
			}
			r, err := waitReady(cmd.Context(), g, hosts, timeout)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Stdout, "ready: server %s (leader %s), %d of %d hosts ready\n", r.url, cmdutil.Safe(r.leader), len(r.ready), len(r.hosts))
			return nil
		},
	}
	ready.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "how long to wait")
	ready.Flags().IntVar(&hosts, "hosts", 0, "how many hosts must be ready (default: all in the inventory, at least one)")
	wait.AddCommand(ready, newWaitGuestCmd(g))
	return wait
}

func newWaitGuestCmd(g *cmdutil.Globals) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "guest VM",
		Short: "Wait until a VM's guest agent answers",
		Long: `Wait until the VM is on and its guest agent (qemu-guest-agent) answers, as
after 'vdc vm start' before 'vdc vm exec'. Exits non-zero, saying the guest
agent's state, after --timeout or when the VM is not on.`,
		Example: `  vdc vm start t1 && vdc wait guest t1 && vdc vm exec t1 -- uname -a`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if timeout <= 0 {
				return fmt.Errorf("--timeout must be positive, got %s", timeout)
			}
			c, err := g.Client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				vm, err := c.GetVM(ctx, args[0])
				if err != nil {
					return fmt.Errorf("wait for the guest agent of vm %s: %w", args[0], err)
				}
				if vm.Status.PowerState != api.PowerOn {
					return fmt.Errorf("wait for the guest agent of vm %s: the vm is %s", args[0], vm.Status.PowerState)
				}
				state := "not answered yet"
				if ga := vm.Status.Guest; ga != nil {
					if ga.State == api.GuestRunning {
						return nil
					}
					state = ga.State
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("the guest agent of vm %s did not answer within %s (its state: %s)", args[0], timeout, state)
				case <-t.C:
				}
			}
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait")
	return cmd
}

// waitReady waits up to timeout for the datacenter to be ready with want
// hosts (0: all, at least one), saying on stderr what it waits for as
// that changes.
func waitReady(ctx context.Context, g *cmdutil.Globals, want int, timeout time.Duration) (readiness, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	lv := &liveness{}
	for {
		r, err := readyOnce(ctx, g, want, lv)
		if err == nil {
			return r, nil
		}
		if msg := err.Error(); msg != last {
			fmt.Fprintln(g.Stderr, "waiting: "+cmdutil.Safe(msg))
			last = msg
		}
		select {
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, context.DeadlineExceeded) {
				return r, cause
			}
			return r, fmt.Errorf("not ready after %s: %w", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readyOnce is one look: nil when ready.
func readyOnce(ctx context.Context, g *cmdutil.Globals, want int, lv *liveness) (readiness, error) {
	path := g.Config
	if path == "" {
		path = client.DefaultConfigPath()
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return readiness{}, fmt.Errorf("no client config at %s yet (vdc up writes it once its server runs)", path)
	}
	c, err := g.Client()
	if err != nil {
		return readiness{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := checkReady(cctx, c, lv)
	if err != nil {
		return r, err
	}
	need := want
	if need == 0 {
		need = max(1, len(r.hosts))
	}
	if len(r.hosts) == 0 && need > 0 {
		return r, errors.New("no host has joined yet")
	}
	if len(r.ready) < need {
		msg := fmt.Sprintf("%d of %d hosts ready", len(r.ready), need)
		if len(r.waiting) > 0 {
			msg += " (" + strings.Join(firstN(r.waiting, 5), "; ") + ")"
		}
		return r, errors.New(msg)
	}
	return r, nil
}

// firstN keeps the first n items and says how many more there were.
func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// plural is "1 CPU", "2 CPUs".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
