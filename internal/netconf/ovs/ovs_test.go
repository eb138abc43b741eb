package ovs_test

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vdc-project/vdc/internal/netconf"
	"github.com/vdc-project/vdc/internal/netconf/netconftest"
	"github.com/vdc-project/vdc/internal/netconf/ovs"
	"github.com/vdc-project/vdc/internal/testenv"
)

// dirs gives each namespace (by inode) one OVS directory for the whole
// test, so that a second backend on a namespace is an agent restarted on
// the same data directory.
var dirs sync.Map // uint64 -> string

func nsInode(t testing.TB, ns netns.NsHandle) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		t.Fatalf("stat namespace: %v", err)
	}
	return st.Ino
}

// dirFor is the namespace's OVS directory; the first call makes it and
// stops its daemons at the end of the test (before the lab's namespaces
// go: cleanups run last-registered first).
func dirFor(t *testing.T, ns netns.NsHandle) string {
	t.Helper()
	ino := nsInode(t, ns)
	if d, ok := dirs.Load(ino); ok {
		return d.(string)
	}
	// Short: socket paths must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "vdc-ovs-")
	if err != nil {
		t.Fatal(err)
	}
	dirs.Store(ino, dir)
	t.Cleanup(func() {
		dirs.Delete(ino)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ovs.StopDaemons(ctx, dir); err != nil {
			t.Errorf("stop the OVS daemons of %s: %v", dir, err)
		}
		if t.Failed() {
			for _, f := range []string{"ovs-vswitchd.log", "ovsdb-server.log"} {
				if b, err := os.ReadFile(dir + "/" + f); err == nil {
					t.Logf("%s:\n%s", f, tail(string(b), 40))
				}
			}
		}
		os.RemoveAll(dir)
	})
	return dir
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func needOVS(t testing.TB) {
	t.Helper()
	testenv.NeedTools(t, "openvswitch-switch", "ovs-vsctl", "ovs-ofctl", "ovs-appctl", "ovsdb-server", "ovs-vswitchd", "ovsdb-tool")
}

func newBackend(t *testing.T, ns netns.NsHandle) netconf.Backend {
	t.Helper()
	return newOVS(t, ns)
}

func newOVS(t *testing.T, ns netns.NsHandle) *ovs.Backend {
	t.Helper()
	needOVS(t)
	// VDC_OVS_DATAPATH=netdev|system pins the datapath (default: the
	// kernel one where the module is there).
	b, err := ovs.New(ovs.Options{NetNS: ns, Dir: dirFor(t, ns), Logger: testLogger(t), Datapath: os.Getenv("VDC_OVS_DATAPATH")})
	if err != nil {
		t.Fatalf("new ovs backend: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func TestConformance(t *testing.T) { netconftest.Run(t, newBackend) }

func TestPolicyConformance(t *testing.T) { netconftest.RunPolicy(t, newBackend) }
