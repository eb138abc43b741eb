package ovs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf/tap"
)

// The daemons of a backend directory: an ovsdb-server holding the
// database dir/conf.db, serving dir/db.sock, and an ovs-vswitchd using
// it, both started inside the backend's network namespace (ovs-vswitchd
// sees that namespace's devices and routes) in a session of their own
// (--detach: they are not the agent's children and outlive it). Their
// pid files, control sockets and logs are in dir too, so several hosts
// on one machine (one namespace each) do not meet.

// Schema locations of Debian's openvswitch-common and of a source build.
var schemaPaths = []string{"/usr/share/openvswitch/vswitch.ovsschema", "/usr/local/share/openvswitch/vswitch.ovsschema"}

type daemon struct {
	name    string // ovsdb-server, ovs-vswitchd
	pidFile string
}

func (c ctl) ovsdbDaemon() daemon {
	return daemon{name: "ovsdb-server", pidFile: filepath.Join(c.dir, "ovsdb-server.pid")}
}

func (c ctl) vswitchdDaemon() daemon {
	return daemon{name: "ovs-vswitchd", pidFile: filepath.Join(c.dir, "ovs-vswitchd.pid")}
}

// pid is the daemon's process when its pid file names a live process of
// that name, else 0.
func (d daemon) pid() int {
	b, err := os.ReadFile(d.pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != d.name {
		return 0 // a recycled pid
	}
	return pid
}

// alive says whether pid is a process that has not exited (a zombie has).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}

// netnsInode is the inode of the network namespace of pid (0: this
// process), which identifies the namespace.
func netnsInode(pid int) (uint64, error) {
	p := "/proc/self/ns/net"
	if pid > 0 {
		p = fmt.Sprintf("/proc/%d/ns/net", pid)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return 0, fmt.Errorf("network namespace of process %d: %w", pid, err)
	}
	return st.Ino, nil
}

// ensureDaemons adopts the directory's daemons when they run, in this
// namespace, and answer; starts those that do not run. A daemon of the
// directory that runs in another namespace is an error: the directory
// belongs to another host.
func (b *Backend) ensureDaemons(ctx context.Context) error {
	// init is the probe: it answers, and it makes the database's root
	// record if an agent died between starting the server and making it
	// (on a database that has it, it writes nothing).
	if err := b.ensureDaemon(ctx, b.c.ovsdbDaemon(), b.startOVSDB, func(ctx context.Context) error {
		_, err := b.c.vsctl(ctx, "--no-wait", "init")
		return err
	}); err != nil {
		return err
	}
	return b.ensureDaemon(ctx, b.c.vswitchdDaemon(), b.startVswitchd, func(ctx context.Context) error {
		_, err := b.c.appctl(ctx, "version")
		return err
	})
}

func (b *Backend) ensureDaemon(ctx context.Context, d daemon, start func(context.Context) error, probe func(context.Context) error) error {
	if pid := d.pid(); pid > 0 {
		ino, err := netnsInode(pid)
		if err != nil {
			return fmt.Errorf("check %s (pid %d) of %s: %w", d.name, pid, b.c.dir, err)
		}
		if ino != b.nsInode {
			return fmt.Errorf("%s (pid %d) of %s runs in another network namespace (inode %d, this backend's is %d): the directory belongs to another host", d.name, pid, b.c.dir, ino, b.nsInode)
		}
		if err := probe(ctx); err != nil {
			return fmt.Errorf("%s (pid %d) of %s runs but does not answer: %w", d.name, pid, b.c.dir, err)
		}
		if b.adopted[d.name] != pid {
			b.log.Info("using running daemon", "daemon", d.name, "pid", pid, "dir", b.c.dir)
			b.adopted[d.name] = pid
		}
		return nil
	}
	if err := start(ctx); err != nil {
		return err
	}
	pid := d.pid()
	if pid == 0 {
		return fmt.Errorf("start %s in %s: it exited after starting; see %s", d.name, b.c.dir, filepath.Join(b.c.dir, d.name+".log"))
	}
	b.adopted[d.name] = pid
	b.log.Info("started daemon", "daemon", d.name, "pid", pid, "dir", b.c.dir)
	return nil
}

func (b *Backend) startOVSDB(ctx context.Context) error {
	db := filepath.Join(b.c.dir, "conf.db")
	schema, err := findSchema()
	if err != nil {
		return err
	}
	if _, err := os.Stat(db); errors.Is(err, os.ErrNotExist) {
		if _, err := b.c.run(ctx, nil, "ovsdb-tool", "create", db, schema); err != nil {
			return fmt.Errorf("create the Open vSwitch database %s: %w", db, err)
		}
	} else if out, _ := b.c.run(ctx, nil, "ovsdb-tool", "needs-conversion", db, schema); strings.TrimSpace(out) == "yes" {
		if _, err := b.c.run(ctx, nil, "ovsdb-tool", "convert", db, schema); err != nil {
			return fmt.Errorf("convert the Open vSwitch database %s to %s: %w", db, schema, err)
		}
	}
	if err := b.detach(ctx, "ovsdb-server", db, "--remote=punix:"+b.c.dbSocket(),
		"--pidfile="+b.c.ovsdbDaemon().pidFile, "--unixctl="+b.c.ovsdbCtl()); err != nil {
		return err
	}
	if _, err := b.c.vsctl(ctx, "--no-wait", "init"); err != nil {
		return fmt.Errorf("initialise the Open vSwitch database in %s: %w", b.c.dir, err)
	}
	return nil
}

func (b *Backend) startVswitchd(ctx context.Context) error {
	if pid, err := b.foreignVswitchd(); err != nil {
		return err
	} else if pid > 0 {
		return fmt.Errorf("start ovs-vswitchd for %s: another ovs-vswitchd (pid %d) already runs in this network namespace; two would fight over its devices (stop it, or give vdc its directory)", b.c.dir, pid)
	}
	return b.detach(ctx, "ovs-vswitchd", b.c.db(), "--pidfile="+b.c.vswitchdDaemon().pidFile, "--unixctl="+b.c.vswitchdCtl())
}

// detach starts an OVS daemon with --detach inside the backend's
// namespace: the command returns once the daemon is ready, the daemon
// in a new session of its own.
func (b *Backend) detach(ctx context.Context, name string, args ...string) error {
	log := filepath.Join(b.c.dir, name+".log")
	args = append(args, "--detach", "--no-chdir", "--log-file="+log, "-vconsole:off", "-vfile:info")
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = b.c.env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// A child is born in the namespace of the thread that forks it.
	if err := tap.InNS(b.ns, cmd.Start); err != nil {
		return fmt.Errorf("start %s for %s: %w", name, b.c.dir, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("start %s for %s: %w: %s (log %s: %s)", name, b.c.dir, err, strings.TrimSpace(out.String()), log, logTail(log))
	}
	return nil
}

// foreignVswitchd is an ovs-vswitchd in this namespace that is not this
// directory's, or 0.
func (b *Backend) foreignVswitchd() (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(comm)) != "ovs-vswitchd" || !alive(pid) {
			continue
		}
		if ino, err := netnsInode(pid); err == nil && ino == b.nsInode {
			return pid, nil
		}
	}
	return 0, nil
}

func findSchema() (string, error) {
	for _, p := range schemaPaths {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no Open vSwitch schema in %v: install openvswitch-switch (apt-get install openvswitch-switch)", schemaPaths)
}

// logTail is the last lines of a daemon's log, for an error message.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, " | ")
}

// StopDaemons stops the ovs-vswitchd and ovsdb-server of dir, if they
// run, and waits until they are gone. The agent never calls it (the
// daemons outlive it, and VMs' traffic goes through them); it is for
// tests and for tearing a host down. Devices and the database stay.
func StopDaemons(ctx context.Context, dir string) error {
	c := ctl{dir: dir}
	var errs []error
	for _, d := range []daemon{c.vswitchdDaemon(), c.ovsdbDaemon()} {
		pid := d.pid()
		if pid == 0 {
			continue
		}
		if err := unix.Kill(pid, unix.SIGTERM); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("stop %s (pid %d) of %s: %w", d.name, pid, dir, err))
			continue
		}
		if err := waitGone(ctx, pid); err != nil {
			errs = append(errs, fmt.Errorf("stop %s (pid %d) of %s: %w", d.name, pid, dir, err))
		}
	}
	return errors.Join(errs...)
}

// waitGone waits until pid has exited, polling with a deadline: the
// daemon is not our child, so there is nothing to wait on.
func waitGone(ctx context.Context, pid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = unix.Kill(pid, unix.SIGKILL)
			return fmt.Errorf("still running 10s after SIGTERM; killed")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}
