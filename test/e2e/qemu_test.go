package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/testenv"
)

// needQEMU skips a test without QEMU, qemu-img, busybox or qemu-ga,
// unless VDC_REQUIRE_E2E=1, where it fails.
func needQEMU(t *testing.T) {
	t.Helper()
	testenv.NeedTools(t, "qemu-system-x86 qemu-utils busybox-static qemu-guest-agent", "qemu-system-x86_64", "qemu-img", "busybox", "qemu-ga")
}

// newQEMUCluster is a server and two agents running real VMs, with the test
// guest image uploaded.
func newQEMUCluster(t *testing.T) *cluster {
	needQEMU(t)
	cl := newCluster(t)
	cl.qemu = true
	cl.inventory()
	cl.vdc("image", "build-test")
	t.Cleanup(func() { cl.killVMProcesses() })
	return cl
}

// qemuPIDs finds the QEMU processes of a VM by name, as an operator would
// with ps.
func qemuPIDs(t *testing.T, vm string) []int {
	out, _ := exec.Command("pgrep", "-f", "qemu-system-x86_64 -name guest="+vm+",").Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// killVMProcesses removes what a failed test may leave: the VMs of this
// cluster's hosts outlive their agents by design.
func (cl *cluster) killVMProcesses() { killVMsUnder(cl.dir) }

// killVMsUnder kills the QEMU processes of VMs whose files are under dir.
func killVMsUnder(dir string) {
	out, _ := exec.Command("pgrep", "-f", "qemu-system-x86_64 .*"+dir).Output()
	for _, f := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(n, syscall.SIGKILL)
		}
	}
}

func (cl *cluster) waitGuest(vm string) *api.VM {
	var got *api.VM
	eventually(cl.t, 3*time.Minute, "the guest agent of "+vm+" to answer", func() bool {
		got = cl.vm(vm)
		// A guest with a NIC has its address once its network is up.
		return got.Status.Guest != nil && got.Status.Guest.State == api.GuestRunning &&
			(len(got.Status.Guest.IPAddresses) > 0 || len(got.Spec.NICs) == 0)
	})
	return got
}

func TestRealVMLifecycle(t *testing.T) {
	cl := newQEMUCluster(t)
	ctx := context.Background()
	cl.vdc("vm", "create", "t1", "--memory", "256MiB", "--image", "test", "--host", "host-1", "--start")
	vm := cl.waitGuest("t1")
	if g := vm.Status.Guest; g.Hostname != "t1" || !strings.Contains(g.OS, "test guest") || g.IPAddresses[0] != "10.0.2.15" {
		t.Fatalf("guest info: %+v", g)
	}
	pids := qemuPIDs(t, "t1")
	if len(pids) != 1 {
		t.Fatalf("want one QEMU process named t1, found %v", pids)
	}

	// exec, as qm guest exec: output and exit code.
	out, err := cl.try("vm", "exec", "t1", "--", "/bin/sh", "-c", "echo hello from $(hostname); echo oops >&2; exit 7")
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(out, "hello from t1") || !strings.Contains(out, "oops") {
		t.Fatalf("vm exec: %v\n%s", err, out)
	}

	// The console: its log, and an interactive session over the websocket.
	if log := cl.vdc("vm", "console", "t1", "--log"); !strings.Contains(log, "vdc-test-guest: ready") {
		t.Fatalf("console log lacks the ready line:\n%s", log)
	}
	ws, err := cl.c.Console(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Write(ctx, websocket.MessageBinary, []byte("\necho vdc-console-$((6*7))\n")); err != nil {
		t.Fatal(err)
	}
	var seen bytes.Buffer
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	for !strings.Contains(seen.String(), "vdc-console-42") {
		_, b, err := ws.Read(rctx)
		if err != nil {
			t.Fatalf("console: %v; saw %q", err, seen.String())
		}
		seen.Write(b)
	}
	cancel()
	ws.Close(websocket.StatusNormalClosure, "")

	// The VM outlives its agent; a new agent finds it running.
	oldAddr := cl.hosts()["host-1"].Status.Address
	cl.agents["host-1"].kill9()
	cl.startAgent("host-1")
	eventually(t, time.Minute, "the new agent of host-1 reporting", func() bool { return cl.hosts()["host-1"].Status.Address != oldAddr })
	if now := qemuPIDs(t, "t1"); len(now) != 1 || now[0] != pids[0] {
		t.Fatalf("QEMU did not survive kill -9 of its agent: %v, was %v", now, pids)
	}
	eventually(t, time.Minute, "t1 on with its guest answering after the agent restart", func() bool {
		vm := cl.vm("t1")
		return vm.Status.PowerState == api.PowerOn && vm.Status.Guest != nil && vm.Status.Guest.State == api.GuestRunning
	})
	if out, err := cl.try("vm", "exec", "t1", "--", "/bin/echo", "still here"); err != nil || !strings.Contains(out, "still here") {
		t.Fatalf("exec after the agent restart: %v %s", err, out)
	}

	// A graceful stop: the guest shuts itself down, QEMU goes away.
	cl.vdc("vm", "stop", "t1", "--timeout", "2m")
	if vm := cl.vm("t1"); vm.Status.PowerState != api.PowerOff {
		t.Fatalf("after stop: %+v", vm.Status)
	}
	eventually(t, 10*time.Second, "QEMU of t1 gone", func() bool { return len(qemuPIDs(t, "t1")) == 0 })

	// Suspend, resume, reset, then delete with force: no process, no files.
	cl.vdc("vm", "start", "t1")
	cl.vdc("vm", "suspend", "t1")
	cl.vdc("vm", "resume", "t1")
	cl.vdc("vm", "reset", "t1")
	cl.waitGuest("t1")
	cl.vdc("vm", "delete", "t1", "--force")
	eventually(t, 10*time.Second, "QEMU of t1 gone after delete", func() bool { return len(qemuPIDs(t, "t1")) == 0 })
	if ents, _ := os.ReadDir(filepath.Join(cl.dir, "hosts", "host-1", "vms")); len(ents) != 0 {
		t.Fatalf("VM files left on the host after delete: %v", ents)
	}
}

func TestGuestThatShutsItselfDownIsOff(t *testing.T) {
	cl := newQEMUCluster(t)
	cl.vdc("vm", "create", "self", "--memory", "256MiB", "--image", "test", "--start")
	cl.waitGuest("self")
	_, _ = cl.try("vm", "exec", "self", "--", "/bin/sh", "-c", "sleep 1; poweroff")
	eventually(t, time.Minute, "self off", func() bool { return cl.vm("self").Status.PowerState == api.PowerOff })
	if msg := cl.vm("self").Status.Message; !strings.Contains(msg, "guest shut down") {
		t.Fatalf("a guest that powered itself off should say so, got %q", msg)
	}
	// A crash is shown with its reason.
	cl.vdc("vm", "start", "self")
	pids := qemuPIDs(t, "self")
	if len(pids) != 1 {
		t.Fatalf("qemu pids %v", pids)
	}
	_ = syscall.Kill(pids[0], syscall.SIGKILL)
	eventually(t, time.Minute, "self off after a crash", func() bool { return cl.vm("self").Status.PowerState == api.PowerOff })
	if msg := cl.vm("self").Status.Message; !strings.Contains(msg, "unexpectedly") || !strings.Contains(msg, "killed") {
		t.Fatalf("a killed QEMU should be shown with the reason, got %q", msg)
	}
}

func TestDisksFromImagesAndBadImages(t *testing.T) {
	cl := newQEMUCluster(t)
	ctx := context.Background()
	dir := filepath.Dir(cl.datastoreFile("base.qcow2")) // files named by path are in a datastore
	base := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", base, "1G").CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	// A linked clone is a thin overlay; a copy is a new file; both are thin.
	cl.vdc("vm", "create", "linked", "--memory", "128MiB", "--image", base, "--linked", "--no-nic")
	cl.vdc("vm", "create", "copied", "--memory", "128MiB", "--image", base, "--disk", "2G", "--no-nic")
	for name, size := range map[string]api.Size{"linked": api.MustSize("1GiB"), "copied": api.MustSize("2GiB")} {
		vm := cl.vm(name)
		d := vm.Spec.Disks[0]
		if d.SizeBytes != size || d.Source != base {
			t.Fatalf("%s disk: %+v", name, d)
		}
		eventually(t, time.Minute, name+" allocation measured", func() bool { return len(cl.vm(name).Status.Disks) == 1 })
		if a := cl.vm(name).Status.Disks[0].AllocatedBytes; a <= 0 || a > api.MustSize("16MiB") {
			t.Fatalf("%s: a thin disk allocates %s", name, a)
		}
	}
	info, _ := exec.Command("qemu-img", "info", "-U", filepath.Join(cl.dir, "datastore1", cl.vm("linked").Spec.Disks[0].Path)).Output()
	if !strings.Contains(string(info), "backing file: "+base) {
		t.Fatalf("linked disk has no backing file:\n%s", info)
	}
	if ds, _ := client.Get[*api.Datastore](ctx, cl.c, api.KindDatastore, "datastore1"); ds.Status.ProvisionedBytes != api.MustSize("3GiB") {
		t.Fatalf("datastore provisioned %s, want 3 GiB", ds.Status.ProvisionedBytes)
	}

	// Bad images: a clear error, and nothing left behind.
	good, _ := os.ReadFile(base)
	corrupt := filepath.Join(dir, "corrupt.qcow2")
	os.WriteFile(corrupt, good[:200], 0o644)
	before, _ := os.ReadDir(filepath.Join(cl.dir, "datastore1"))
	outside := filepath.Join(t.TempDir(), "outside.qcow2")
	os.WriteFile(outside, good, 0o644)
	evil := filepath.Join(dir, "evil.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-b", "/etc/hostname", "-F", "raw", evil).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	os.Symlink("/etc/shadow", filepath.Join(dir, "shadow.iso"))
	for name, args := range map[string][]string{
		"missing image":         {"--image", filepath.Join(dir, "nope.qcow2")},
		"corrupt qcow2":         {"--image", corrupt},
		"missing ISO":           {"--disk", "1G", "--cdrom", filepath.Join(dir, "nope.iso")},
		"image outside":         {"--image", outside},
		"ISO outside":           {"--disk", "1G", "--cdrom", "/etc/shadow"},
		"ISO symlinked outside": {"--disk", "1G", "--cdrom", filepath.Join(dir, "shadow.iso")},
		"backing file":          {"--image", evil},
	} {
		out, err := cl.try(append([]string{"vm", "create", "bad", "--memory", "128MiB", "--no-nic"}, args...)...)
		if err == nil {
			t.Fatalf("%s: vm create succeeded:\n%s", name, out)
		}
		if !strings.Contains(out, "vdc: ") {
			t.Fatalf("%s: no clear error:\n%s", name, out)
		}
		if want := map[string]string{"image outside": "is not a file in a datastore", "ISO outside": "is not a file in a datastore",
			"ISO symlinked outside": "is not a file in a datastore of host", "backing file": "backing file"}[name]; !strings.Contains(out, want) {
			t.Fatalf("%s: the error does not say %q:\n%s", name, want, out)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(out))
		if _, err := cl.c.GetVM(ctx, "bad"); err == nil {
			t.Fatalf("%s: a VM was left behind", name)
		}
	}
	after, _ := os.ReadDir(filepath.Join(cl.dir, "datastore1"))
	if len(after) != len(before) {
		t.Fatalf("a failed create left files on the datastore: %v -> %v", names(before), names(after))
	}
	if len(qemuPIDs(t, "bad")) != 0 {
		t.Fatal("a failed create left a QEMU process")
	}
	cl.vdc("vm", "delete", "linked")
	cl.vdc("vm", "delete", "copied")
}

// A datastore without room refuses a copy, cleanly (needs root for a tmpfs).
func TestFullDatastore(t *testing.T) {
	testenv.NeedRoot(t, "to mount a small tmpfs")
	cl := newQEMUCluster(t)
	tiny := filepath.Join(cl.dir, "tiny")
	os.MkdirAll(tiny, 0o755)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", tiny).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", tiny).Run() })
	cl.vdc("datastore", "create", "tiny", "--path", tiny)
	cl.waitConnected("host-1", "host-2")
	eventually(t, 30*time.Second, "hosts reach the tiny datastore", func() bool {
		ds, err := client.Get[*api.Datastore](context.Background(), cl.c, api.KindDatastore, "tiny")
		return err == nil && len(ds.Status.Hosts) == 2
	})
	img := cl.datastoreFile("big.raw")
	f, _ := os.Create(img)
	f.Write(bytes.Repeat([]byte{0xAB}, 16<<20)) // 16 MiB of real data: no room to copy it
	f.Close()
	out, err := cl.try("vm", "create", "nospace", "--memory", "128MiB", "--no-nic", "--image", img, "--disk", "0,datastore=tiny")
	if err == nil || !strings.Contains(out, "free") {
		t.Fatalf("copying 16 MiB into a 4 MiB datastore: %v\n%s", err, out)
	}
	if ents, _ := os.ReadDir(tiny); len(ents) != 0 {
		t.Fatalf("files left on the full datastore: %v", names(ents))
	}
}

func names(ents []os.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// Disks on every bus, a CD-ROM and a VNC display reach a real guest.
func TestDevices(t *testing.T) {
	cl := newQEMUCluster(t)
	iso := cl.datastoreFile("data.iso")
	if err := os.WriteFile(iso, bytes.Repeat([]byte("vdc!"), 512*1024), 0o644); err != nil { // 2 MiB
		t.Fatal(err)
	}
	cl.vdc("vm", "create", "dev1", "--memory", "256MiB", "--image", "test", "--vnc", "--cdrom", iso,
		"--disk", "1G", "--disk", "2G,bus=scsi", "--disk", "3G,bus=sata", "--start")
	vm := cl.waitGuest("dev1")
	if !strings.HasPrefix(vm.Status.VNC, "unix:/") {
		t.Fatalf("VNC address: %q, want a unix socket", vm.Status.VNC)
	}
	out := cl.vdc("vm", "exec", "dev1", "--", "/bin/cat", "/proc/partitions")
	// virtio-blk is vda; SCSI and SATA disks are sd*; the CD-ROM is sr0.
	for _, want := range []string{"vda", "sda", "sdb", "sr0"} {
		if !strings.Contains(out, want) {
			t.Errorf("the guest does not see %s:\n%s", want, out)
		}
	}
	sizes := map[string]string{"1048576": "vda 1 GiB", "2097152": "2 GiB SCSI", "3145728": "3 GiB SATA"}
	for blocks, what := range sizes {
		if !strings.Contains(out, blocks) {
			t.Errorf("the guest lacks the %s disk (%s 1K blocks):\n%s", what, blocks, out)
		}
	}
	if out := cl.vdc("vm", "exec", "dev1", "--", "/bin/sh", "-c", "head -c 8 /dev/sr0"); out != "vdc!vdc!" {
		t.Errorf("reading the CD-ROM: %q", out)
	}
	cl.vdc("vm", "delete", "dev1", "--force")
}
