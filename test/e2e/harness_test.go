// Package e2e runs the real vdc binary: a server and agents as separate
// processes talking mutual TLS, driven only through the CLI and the Go client.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

var vdcBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vdc-e2e-bin")
	if err != nil {
		panic(err)
	}
	vdcBin = filepath.Join(dir, "vdc")
	build := exec.Command("go", "build", "-o", vdcBin, "../../cmd/vdc")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build vdc:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a vdc process under test.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// syncBuffer is the output of a running process, safe to read while it writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return startCmdEnv(t, name, env, vdcBin, args...)
}

func startCmd(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	return startCmdEnv(t, name, nil, bin, args...)
}

func startCmdEnv(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	return startProc(t, name, env, exec.Command(bin, args...))
}

// startProc starts cmd (with env added to the test's) as a process under
// test, killed when the test ends.
func startProc(t *testing.T, name string, env []string, cmd *exec.Cmd) *proc {
	t.Helper()
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.kill9()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.out.String())
		}
	})
	return p
}

// kill9 kills the process with SIGKILL, as a crash would.
func (p *proc) kill9() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

// stop sends SIGTERM (or the given signal) and waits for a clean exit.
func (p *proc) stop(sig syscall.Signal) error {
	_ = p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		return err
	case <-time.After(30 * time.Second):
		p.t.Fatalf("%s did not stop within 30s of %v", p.name, sig)
		return nil
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cluster is a server and its agents, each a separate process.
type cluster struct {
	t      *testing.T
	qemu   bool    // agents run real VMs
	lab    *netLab // agents in their own network namespaces, when set
	dir    string
	listen string
	server *proc
	agents map[string]*proc
	env    []string // VDC_CONFIG for the CLI
	c      *client.Client
	token  string
	// agentArgs are added to every agent's command line.
	agentArgs []string
}

func newCluster(t *testing.T) *cluster {
	dir := t.TempDir()
	cl := &cluster{t: t, dir: dir, listen: freePort(t), agents: map[string]*proc{}}
	cl.env = []string{"VDC_CONFIG=" + filepath.Join(dir, "server", "admin.json")}
	cl.startServer()
	return cl
}

func (cl *cluster) startServer() {
	t := cl.t
	cl.server = start(t, "server", nil, "server", "--data", filepath.Join(cl.dir, "server"), "--listen", cl.listen,
		"--heartbeat-interval", "1s", "--host-timeout", "4s", "--migration-stall-timeout", "15s")
	eventually(t, 60*time.Second, "server API", func() bool {
		c, err := client.FromFile(filepath.Join(cl.dir, "server", "admin.json"))
		if err != nil {
			return false
		}
		if _, err := c.Version(context.Background()); err != nil {
			return false
		}
		cl.c = c
		return true
	})
}

func (cl *cluster) driver() string {
	if cl.qemu {
		return "qemu"
	}
	return "sim"
}

func (cl *cluster) startAgent(name string) {
	cl.startAgentToken(name, cl.token)
}

// startAgentToken starts an agent with a join token (if not "") in its
// environment, as an operator would: on its command line ps shows it.
func (cl *cluster) startAgentToken(name, token string) {
	listen := "127.0.0.1:0"
	if cl.lab != nil {
		listen = cl.lab.hostIP(name) + ":0"
	}
	args := []string{"agent", "--server", "https://" + cl.listen, "--data", filepath.Join(cl.dir, "hosts", name), "--name", name,
		"--listen", listen, "--driver", cl.driver(), "--guest-poll", "1s"}
	var env []string
	if token != "" {
		env = []string{"VDC_JOIN_TOKEN=" + token}
	}
	args = append(args, cl.agentArgs...)
	if cl.lab != nil { // the agent runs inside the host's namespace
		args = append([]string{"netns", "exec", cl.lab.ns(name), vdcBin}, args...)
		cl.agents[name] = startCmdEnv(cl.t, "agent "+name, env, "ip", args...)
		return
	}
	cl.agents[name] = start(cl.t, "agent "+name, env, args...)
}

// newLabCluster is a cluster whose server listens on the lab's bridge and
// whose agents each run in a host namespace of the lab.
func newLabCluster(t *testing.T, lab *netLab, qemu bool) *cluster {
	dir := t.TempDir()
	cl := &cluster{t: t, dir: dir, lab: lab, qemu: qemu, agents: map[string]*proc{}}
	cl.listen = lab.serverIP() + ":" + strings.Split(freePort(t), ":")[1]
	cl.env = []string{"VDC_CONFIG=" + filepath.Join(dir, "server", "admin.json")}
	cl.startServer()
	return cl
}

// vdc runs the CLI and returns its stdout; it fails the test on error.
func (cl *cluster) vdc(args ...string) string {
	cl.t.Helper()
	out, err := cl.try(args...)
	if err != nil {
		cl.t.Fatalf("vdc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs the CLI and returns its combined output and error.
func (cl *cluster) try(args ...string) (string, error) {
	cmd := exec.Command(vdcBin, args...)
	cmd.Env = append(os.Environ(), cl.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func (cl *cluster) json(v any, args ...string) {
	cl.t.Helper()
	out := cl.vdc(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		cl.t.Fatalf("vdc %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (cl *cluster) vm(name string) *api.VM {
	var vm api.VM
	cl.json(&vm, "vm", "info", name)
	return &vm
}

func (cl *cluster) hosts() map[string]*api.Host {
	var hs []*api.Host
	cl.json(&hs, "host", "ls")
	out := map[string]*api.Host{}
	for _, h := range hs {
		out[h.Metadata.Name] = h
	}
	return out
}

// heartbeats waits until the server has taken n more heartbeats from the
// host: "a few heartbeats later", observed rather than slept.
func (cl *cluster) heartbeats(n int, name string) {
	var last time.Time
	seen := -1
	eventually(cl.t, time.Duration(n+10)*5*time.Second, fmt.Sprintf("%d heartbeats from %s", n, name), func() bool {
		if h := cl.hosts()[name]; h != nil && !h.Status.LastHeartbeat.Equal(last) {
			last = h.Status.LastHeartbeat
			seen++
		}
		return seen >= n
	})
}

func (cl *cluster) waitConnected(names ...string) {
	eventually(cl.t, 30*time.Second, fmt.Sprintf("hosts %v connected", names), func() bool {
		hs := cl.hosts()
		for _, n := range names {
			if h := hs[n]; h == nil || h.Status.Connection != api.HostConnected || len(h.Status.Datastores) == 0 {
				return false
			}
		}
		return true
	})
}

// inventory creates dc1, cluster1, a shared datastore and a port group
// through the CLI, and two joined hosts.
func (cl *cluster) inventory() {
	cl.inventoryN(2)
}

func (cl *cluster) inventoryN(n int) {
	ds := filepath.Join(cl.dir, "datastore1")
	if err := os.MkdirAll(ds, 0o755); err != nil {
		cl.t.Fatal(err)
	}
	cl.vdc("datacenter", "create", "dc1")
	cl.vdc("cluster", "create", "cluster1")
	cl.vdc("datastore", "create", "datastore1", "--path", ds)
	cl.vdc("portgroup", "create", "vm-network")
	cl.token = strings.TrimSpace(cl.vdc("host", "token", "create", "--uses", strconv.Itoa(n)))
	var names []string
	for i := 1; i <= n; i++ {
		names = append(names, fmt.Sprintf("host-%d", i))
		cl.startAgent(names[i-1])
	}
	cl.waitConnected(names...)
}

// datastoreFile is where a test puts a file that VMs are made from by
// path (vm create --image FILE, --cdrom FILE, image import FILE): hosts
// read no file outside their datastores.
func (cl *cluster) datastoreFile(name string) string {
	cl.t.Helper()
	p := filepath.Join(cl.dir, "datastore1", "files", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		cl.t.Fatal(err)
	}
	return p
}

// copyToDatastore copies a file made elsewhere into datastore1.
func (cl *cluster) copyToDatastore(src string) string {
	cl.t.Helper()
	dst := cl.datastoreFile(filepath.Base(src))
	if err := os.Link(src, dst); err == nil {
		return dst
	}
	b, err := os.ReadFile(src)
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		cl.t.Fatal(err)
	}
	return dst
}

// childPIDs lists the processes whose parent is pid, in PID order.
func childPIDs(t *testing.T, pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the command name, which is in parentheses: state, ppid...
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) > 1 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}
