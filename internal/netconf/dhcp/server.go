package dhcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
)

// maxLogBytes is how large a service's log may grow before Converge
// rotates it (one old generation is kept).
const maxLogBytes = 4 << 20

// How long a dnsmasq gets to exit after SIGTERM, then after SIGKILL.
const (
	termTimeout = 5 * time.Second
	killTimeout = 2 * time.Second
)

// dnsmasqPath finds the dnsmasq binary.
func dnsmasqPath() (string, error) {
	if p, err := exec.LookPath("dnsmasq"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/dnsmasq"); err == nil {
		return "/usr/sbin/dnsmasq", nil
	}
	return "", errors.New("dnsmasq is not installed (apt-get install dnsmasq-base)")
}

// ensureServer makes exactly one dnsmasq run the service in dir with f:
// it adopts the one running (from its pid file), tells it about new
// bindings with SIGHUP, restarts it when its configuration changed, and
// starts one when none runs.
func ensureServer(ctx context.Context, ns netns.NsHandle, dir string, f files, log *slog.Logger) error {
	pid, conf := running(dir)
	if pid != 0 && conf != f.conf {
		log.Info("DHCP configuration changed: restarting dnsmasq (leases are kept)", "pid", pid, "was", filepath.Base(conf), "now", filepath.Base(f.conf))
		if err := stop(ctx, dir, pid); err != nil {
			return err
		}
		pid = 0
	}
	if pid == 0 {
		var err error
		if pid, err = start(ctx, ns, dir, f, log); err != nil {
			return err
		}
	} else if err := syncBindings(dir, pid, f.hosts, log); err != nil {
		return err
	}
	removeOldConfs(dir, f.conf, log)
	rotateLog(dir, pid, log)
	return nil
}

// start writes a service's files and starts its dnsmasq, which
// daemonizes: it runs in a session of its own, a child of init, and
// outlives the agent. dnsmasq's parent exits only once the daemon runs
// (or with the reason it cannot), and the daemon writes its pid file
// before that.
func start(ctx context.Context, ns netns.NsHandle, dir string, f files, log *slog.Logger) (int, error) {
	bin, err := dnsmasqPath()
	if err != nil {
		return 0, err
	}
	if err := writeAtomic(filepath.Join(dir, hostsFile), f.hosts); err != nil {
		return 0, err
	}
	if err := writeAtomic(f.conf, f.confText); err != nil {
		return 0, err
	}
	if err := os.Remove(filepath.Join(dir, pidFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("remove stale pid file: %w", err)
	}
	cmd := exec.CommandContext(ctx, bin, "--conf-file="+f.conf)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	// The child is forked by a thread inside ns, so dnsmasq runs there.
	if err := inNS(ns, cmd.Start); err != nil {
		return 0, fmt.Errorf("start dnsmasq with %s: %w", f.conf, err)
	}
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("start dnsmasq with %s: %w: %s", f.conf, err, strings.TrimSpace(out.String()))
	}
	pid, conf := running(dir)
	if pid == 0 || conf != f.conf {
		return 0, fmt.Errorf("start dnsmasq with %s: it exited at once (see %s)", f.conf, filepath.Join(dir, logFile))
	}
	if err := writeApplied(dir, pid, f.hosts); err != nil {
		return 0, err
	}
	log.Info("dnsmasq started", "pid", pid, "conf", f.conf)
	return pid, nil
}

// syncBindings makes the running dnsmasq pid serve hosts: when the file
// or what pid last read (the applied marker) differs, the file is
// replaced atomically and dnsmasq re-reads it on SIGHUP, keeping its
// leases. The marker is written after the signal, so a crash in between
// means one more SIGHUP next time, never a stale server.
func syncBindings(dir string, pid int, hosts []byte, log *slog.Logger) error {
	path := filepath.Join(dir, hostsFile)
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read bindings: %w", err)
	}
	if bytes.Equal(old, hosts) && readApplied(dir) == applied(pid, hosts) {
		log.Debug("dnsmasq up to date", "pid", pid)
		return nil
	}
	if !bytes.Equal(old, hosts) {
		if err := writeAtomic(path, hosts); err != nil {
			return err
		}
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return fmt.Errorf("tell dnsmasq %d about new bindings (SIGHUP): %w", pid, err)
	}
	log.Info("bindings changed: dnsmasq re-reads them (SIGHUP)", "pid", pid, "bindings", bytes.Count(hosts, []byte("\n")))
	return writeApplied(dir, pid, hosts)
}

// stopServer stops the dnsmasq of the service in dir, if one runs.
func stopServer(ctx context.Context, dir string, log *slog.Logger) error {
	pid, _ := running(dir)
	if pid == 0 {
		return nil
	}
	if err := stop(ctx, dir, pid); err != nil {
		return err
	}
	log.Info("dnsmasq stopped", "pid", pid)
	return nil
}

// stop ends dnsmasq pid (of the service in dir): SIGTERM, then SIGKILL.
// The daemon is not our child; it is gone when /proc no longer shows it
// running the service's configuration (a zombie has no command line).
func stop(ctx context.Context, dir string, pid int) error {
	gone := func() bool { p, _ := running(dir); return p != pid }
	for _, step := range []struct {
		sig     syscall.Signal
		timeout time.Duration
	}{{syscall.SIGTERM, termTimeout}, {syscall.SIGKILL, killTimeout}} {
		if err := syscall.Kill(pid, step.sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("stop dnsmasq %d (%v): %w", pid, step.sig, err)
		}
		if err := waitUntil(ctx, step.timeout, gone); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("stop dnsmasq %d: %w", pid, err)
		}
	}
	return fmt.Errorf("stop dnsmasq %d: still running after SIGKILL", pid)
}

// waitUntil polls cond until it holds, timeout passes or ctx ends.
func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("not done after %v", timeout)
		case <-tick.C:
		}
	}
	return nil
}

// running is the pid of the dnsmasq that runs the service in dir and
// the configuration file it runs with, from the pid file and the
// process's command line; 0 when none runs (no pid file, a dead
// process, or a process that reused the pid).
func running(dir string) (int, string) {
	b, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, ""
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, ""
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return 0, ""
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if filepath.Base(args[0]) != "dnsmasq" {
		return 0, ""
	}
	prefix := "--conf-file=" + filepath.Join(dir, confPrefix)
	for _, a := range args[1:] {
		if strings.HasPrefix(a, prefix) && strings.HasSuffix(a, confSuffix) {
			return pid, strings.TrimPrefix(a, "--conf-file=")
		}
	}
	return 0, ""
}

// applied is the marker of a dnsmasq pid having read bindings hosts.
func applied(pid int, hosts []byte) string {
	sum := sha256.Sum256(hosts)
	return strconv.Itoa(pid) + " " + hex.EncodeToString(sum[:])
}

func readApplied(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, appliedFile))
	return strings.TrimSpace(string(b))
}

func writeApplied(dir string, pid int, hosts []byte) error {
	return writeAtomic(filepath.Join(dir, appliedFile), []byte(applied(pid, hosts)+"\n"))
}

// removeOldConfs removes configuration files other than the current.
func removeOldConfs(dir, current string, log *slog.Logger) {
	old, _ := filepath.Glob(filepath.Join(dir, confPrefix+"*"+confSuffix))
	for _, p := range old {
		if p == current {
			continue
		}
		if err := os.Remove(p); err != nil {
			log.Warn("cannot remove an old dnsmasq configuration", "file", p, "err", err)
		}
	}
}

// rotateLog keeps a service's log from growing without end: past
// maxLogBytes it becomes dnsmasq.log.1 and dnsmasq reopens its log on
// SIGUSR2.
func rotateLog(dir string, pid int, log *slog.Logger) {
	path := filepath.Join(dir, logFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < maxLogBytes {
		return
	}
	if err := os.Rename(path, path+".1"); err != nil {
		log.Warn("cannot rotate the dnsmasq log", "file", path, "err", err)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		log.Warn("cannot make dnsmasq reopen its log (SIGUSR2)", "pid", pid, "err", err)
	}
}

// writeAtomic replaces path with data: a reader sees the old file or
// the new one, never a part.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
