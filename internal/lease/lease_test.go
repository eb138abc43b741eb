package lease

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

func TestOnlyOneHolder(t *testing.T) {
	p := Path(t.TempDir(), "vm1")
	f, err := Acquire(p, "host-1")
	if err != nil {
		t.Fatal(err)
	}
	// A second open file of the same process conflicts too: two simulated
	// hosts in one agent process are kept apart.
	_, err = Acquire(p, "host-2")
	var he *HeldError
	if !errors.As(err, &he) || !errors.Is(err, ErrHeld) || !strings.Contains(he.Holder, "host-1") {
		t.Fatalf("second holder: %v", err)
	}
	held, who, err := Held(p)
	if err != nil || !held || !strings.HasPrefix(who, "host-1 since ") {
		t.Fatalf("Held = %v %q %v", held, who, err)
	}
	f.Close()
	if held, _, _ := Held(p); held {
		t.Fatal("still held after its file closed")
	}
	g, err := Acquire(p, "host-2")
	if err != nil {
		t.Fatalf("free lease: %v", err)
	}
	defer g.Close()
	if _, who, _ := Held(p); !strings.HasPrefix(who, "host-2") {
		t.Fatalf("holder after the takeover: %q", who)
	}
}

func TestNoLeaseIsNotHeld(t *testing.T) {
	held, _, err := Held(filepath.Join(t.TempDir(), "none"))
	if held || err != nil {
		t.Fatalf("missing lease: %v %v", held, err)
	}
}

// The lock stays with a process the file was passed to after the taker
// let go of its own copy, and goes when that process dies.
func TestLeaseFollowsTheProcessHoldingIt(t *testing.T) {
	testenv.NeedTools(t, "coreutils", "sleep")
	sleep, _ := exec.LookPath("sleep")
	p := Path(t.TempDir(), "vm1")
	f, err := Acquire(p, "host-1")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sleep, "60")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Acquire(p, "host-2"); !errors.Is(err, ErrHeld) {
		t.Fatalf("lease passed to a running process was taken: %v", err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	g, err := Acquire(p, "host-2")
	if err != nil {
		t.Fatalf("lease of a dead process: %v", err)
	}
	g.Close()
}
