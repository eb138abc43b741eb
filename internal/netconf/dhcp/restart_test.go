package dhcp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// agentEnv makes the test binary a stand-in agent: it converges the
// namespace it gets as fd 3 to the services in the variable, says so,
// and waits to be killed.
const agentEnv = "VDC_DHCP_TEST_AGENT"

type agentSpec struct {
	RunDir   string
	Services []Service
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(agentEnv); spec != "" {
		os.Exit(fakeAgent(spec))
	}
	os.Exit(m.Run())
}

func fakeAgent(spec string) int {
	var s agentSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, "agent spec:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Converge(ctx, netns.NsHandle(3), s.RunDir, s.Services); err != nil {
		fmt.Fprintln(os.Stderr, "converge:", err)
		return 1
	}
	fmt.Println("converged")
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	return 0
}

// The dnsmasq an agent started outlives the agent (kill -9 of its whole
// process group), and the next agent adopts it instead of starting
// another.
func TestAgentRestartAdoptsServer(t *testing.T) {
	needLab(t)
	a, b := newHost(t, "a"), newHost(t, "b")
	vm := newVM(t, a, "a1", "52:54:00:0a:00:01")
	s := service(vm.binding("192.0.2.10", "vm-a1"))
	agent := startAgent(t, a, s)
	pid := a.pid(t)

	if err := syscall.Kill(-agent.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill the agent's process group: %v", err)
	}
	_ = agent.Wait()
	if !alive(pid) {
		t.Fatalf("dnsmasq %d died with the agent", pid)
	}

	a.converge(t, s)
	if now := a.pid(t); now != pid {
		t.Errorf("the new agent runs dnsmasq %d, want the adopted %d", now, pid)
	}
	if n := countServers(t, a.dir()); n != 1 {
		t.Errorf("%d dnsmasq processes serve the port group, want 1", n)
	}
	checkLease(t, vm, "192.0.2.10", "vm-a1", a, b)

	// The new agent can change what it adopted.
	s.Bindings[0].IP = netip.MustParseAddr("192.0.2.12")
	a.converge(t, s)
	checkLease(t, vm, "192.0.2.12", "vm-a1", a, b)
	if now := a.pid(t); now != pid {
		t.Errorf("new bindings restarted the adopted dnsmasq: %d, was %d", now, pid)
	}
}

// startAgent runs the test binary as an agent for host h in a process
// group of its own, and returns once it has converged.
func startAgent(t *testing.T, h *labHost, want ...Service) *exec.Cmd {
	t.Helper()
	spec, err := json.Marshal(agentSpec{RunDir: h.runDir, Services: want})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(h.ns))
	if err != nil {
		t.Fatal(err)
	}
	nsFile := os.NewFile(uintptr(fd), "netns")
	defer nsFile.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), agentEnv+"="+string(spec))
	cmd.ExtraFiles = []*os.File{nsFile}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the agent: %v", err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "converged" {
		_ = cmd.Process.Kill()
		t.Fatalf("the agent did not converge: %q %v", line, err)
	}
	return cmd
}
