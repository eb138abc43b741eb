package proc

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// What one agent process saves of a VM, the next one reads back whole,
// and the file is never left half-written beside it.
func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	since := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	want := State{Power: "suspended", Reason: "paused: out of space", Since: since, Lease: "/ds/vm/lease",
		Hardware: &api.VMHardware{CPUs: 2, MemoryBytes: 512 << 20, DIMMs: []api.Size{256 << 20}}}
	if err := WriteState(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadState(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Power != want.Power || got.Reason != want.Reason || !got.Since.Equal(since) || got.Lease != want.Lease ||
		got.Hardware == nil || got.Hardware.CPUs != 2 || got.Hardware.TotalMemory() != 768<<20 {
		t.Fatalf("read back %+v (hardware %+v), want %+v", got, got.Hardware, want)
	}
	if _, err := os.Stat(path + ".tmp"); !os.IsNotExist(err) {
		t.Fatalf("the temporary file is left: %v", err)
	}
}

// A pid file whose process is not this VM's QEMU (a reused PID, a
// stale file) does not count as the VM running.
func TestFindOnlyTheVMsQEMU(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "qemu.pid")
	if _, alive := Find(pidFile, "vm-1"); alive {
		t.Fatal("no pid file, yet a process is found")
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pid, alive := Find(pidFile, "vm-1"); alive || pid != os.Getpid() {
		t.Fatalf("the test process taken for the VM's QEMU: pid %d alive %v", pid, alive)
	}
	if err := os.WriteFile(pidFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, alive := Find(pidFile, "vm-1"); alive {
		t.Fatal("a pid file without a number found a process")
	}
}

// Error messages quote the end of QEMU's log on one line.
func TestTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qemu.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := Tail(path, 2); got != "two; three" {
		t.Fatalf("Tail = %q", got)
	}
	if got := Tail(filepath.Join(t.TempDir(), "none"), 2); got != "" {
		t.Fatalf("Tail of a missing file = %q", got)
	}
}
