package lab

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

func TestLabHostsReachTheServerAndEachOther(t *testing.T) {
	if err := Available(); err != nil {
		testenv.Skip(t, "%v", err)
	}
	testenv.NeedTools(t, "apt-get install iproute2 iputils-ping", "ip", "ping")
	l := For(t.TempDir())
	t.Cleanup(func() { _ = l.Remove(2) })
	for range 2 { // a second Ensure finds everything there
		if err := l.Ensure(2); err != nil {
			t.Fatal(err)
		}
	}
	ping := func(host int, to string) error {
		args := append(l.Exec(host), "ping", "-c", "1", "-W", "2", to)
		return exec.Command(args[0], args[1:]...).Run()
	}
	if err := ping(1, l.ServerIP().String()); err != nil {
		t.Fatalf("host 1 cannot reach the server's address %s: %v", l.ServerIP(), err)
	}
	if err := ping(1, l.HostIP(2).String()); err != nil {
		t.Fatalf("host 1 cannot reach host 2 at %s: %v", l.HostIP(2), err)
	}
	out, err := exec.Command("ip", "-n", l.Namespace(2), "-o", "addr", "show", "eth0").Output()
	if err != nil || strings.Count(string(out), l.HostIP(2).String()+"/24") != 1 {
		t.Fatalf("host 2's eth0 after two Ensures: %s %v", out, err)
	}
	if err := l.Remove(2); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), l.Namespace(1)) {
		t.Fatalf("namespace %s is still there after Remove", l.Namespace(1))
	}
}
