package bench

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// progress is where a benchmark's progress lines go.
func progress(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// dataDir is a benchmark's data directory: keep when given (made if
// need be), else a temp dir that the returned func removes.
func dataDir(keep, prefix string) (string, func(), error) {
	if keep != "" {
		return keep, func() {}, os.MkdirAll(keep, 0o755)
	}
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", func() {}, err
	}
	return d, func() { os.RemoveAll(d) }, nil
}

// spawn starts a vdc subcommand with its output in a log file; it dies with us.
func spawn(exe, logPath string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start vdc %s: %w", args[0], err)
	}
	go func() { _ = cmd.Wait(); f.Close() }()
	return cmd, nil
}

func stopProc(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	for i := 0; i < 100; i++ {
		if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
}

// procMemory reads a process's resident and peak resident memory in MiB.
func procMemory(pid int) (rss, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// qemuRSS is the mean RSS (MiB) of the QEMU processes of VMs named prefix*.
func qemuRSS(prefix string) float64 {
	out, _ := exec.Command("pgrep", "-f", "qemu-system-x86_64 -name guest="+prefix).Output()
	var sum float64
	n := 0
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			rss, _ := procMemory(pid)
			sum += rss
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

// procCPU is the CPU time (user and system) process pid has used so far.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (in parentheses, which may hold
	// spaces): utime and stime are the 12th and 13th, in clock ticks.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on Linux.
const clockTicks = 100
