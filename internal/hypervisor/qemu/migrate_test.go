package qemu

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/hypervisor"
	"github.com/vdc-project/vdc/internal/pki"
)

// tlsDir writes a host certificate in QEMU's layout; both test hosts use
// it, and the target is checked by the name in it.
func tlsDir(t *testing.T) (dir, hostname string) {
	t.Helper()
	ca, _, err := pki.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	hostname = pki.HostDNSName("target")
	cert, key, err := ca.Issue(pki.Names{CN: "host:target", DNS: []string{hostname}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	for name, data := range map[string][]byte{"ca-cert.pem": ca.CertPEM, "server-cert.pem": cert, "server-key.pem": key,
		"client-cert.pem": cert, "client-key.pem": key, "dh-params.pem": []byte(pki.FFDHE2048)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir, hostname
}

func newMigrationDriver(t *testing.T, dir, tls string) *Driver {
	t.Helper()
	d, err := New(context.Background(), Options{RunDir: filepath.Join(dir, "run"), Accel: testAccel(), GuestPoll: 500 * time.Millisecond,
		TLSDir: tls, Log: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func exec1(t *testing.T, d *Driver, id, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := d.GuestExec(ctx, id, hypervisor.ExecRequest{Path: "/bin/sh", Args: []string{"-c", script}})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("exec %q: %v %+v", script, err, res)
	}
	return string(res.Stdout)
}

func waitGuest(t *testing.T, d *Driver, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		if g, _ := d.Guest(context.Background(), id); g.State == hypervisor.GuestRunning {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("guest of %s never answered", id)
}

func uptime(t *testing.T, d *Driver, id string) float64 {
	f, err := strconv.ParseFloat(strings.Fields(exec1(t, d, id, "cat /proc/uptime"))[0], 64)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// migrate runs a whole migration between two drivers of this machine.
func migrate(t *testing.T, src, dst *Driver, cfg hypervisor.VMConfig, disks bool, hostname string) hypervisor.MigrationStatus {
	t.Helper()
	st := send(t, src, dst, cfg, disks, hostname)
	ctx := context.Background()
	if err := dst.FinishIncoming(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	if err := src.Release(ctx, cfg.ID, disks); err != nil {
		t.Fatal(err)
	}
	return st
}

// send migrates a VM up to the switch-over: the source has sent
// everything, the target's copy has not run yet.
func send(t *testing.T, src, dst *Driver, cfg hypervisor.VMConfig, disks bool, hostname string) hypervisor.MigrationStatus {
	t.Helper()
	ctx := context.Background()
	in, err := dst.Incoming(ctx, cfg, hypervisor.IncomingOptions{Address: "127.0.0.1", TLS: true, Disks: disks})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.MigrateOut(ctx, cfg.ID, hypervisor.MigrateTarget{URI: in.URI, NBD: in.NBD, TLSHostname: hostname}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	var st hypervisor.MigrationStatus
	for time.Now().Before(deadline) {
		st, _ = src.MigrationStatus(ctx, cfg.ID)
		if st.State == hypervisor.MigrationCompleted || st.State == hypervisor.MigrationFailed {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.State != hypervisor.MigrationCompleted {
		t.Fatalf("migration: %+v", st)
	}
	return st
}

// A running guest moves to another QEMU, over TLS, and goes on where it
// was: same uptime line, same memory, same disk data; shared storage and
// disks copied over NBD both.
func TestLiveMigration(t *testing.T) {
	g := testGuest(t)
	tls, hostname := tlsDir(t)
	for _, disks := range []bool{false, true} {
		name := "shared-storage"
		if disks {
			name = "copy-disks"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			base := t.TempDir()
			src := newMigrationDriver(t, filepath.Join(base, "a"), tls)
			dst := newMigrationDriver(t, filepath.Join(base, "b"), tls)
			cfg := testConfig(g, filepath.Join(base, "a", "vm"), "mig1")
			os.MkdirAll(cfg.Dir, 0o700)
			os.MkdirAll(filepath.Join(base, "ds-a"), 0o755)
			os.MkdirAll(filepath.Join(base, "ds-b"), 0o755)
			cfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(base, "ds-a", "mig1", "disk0.qcow2"), SizeBytes: 64 << 20, Bus: "virtio"}}
			if err := src.Define(ctx, cfg); err != nil {
				t.Fatal(err)
			}
			if err := src.Start(ctx, cfg.ID); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				src.PowerOff(context.Background(), cfg.ID)
				dst.PowerOff(context.Background(), cfg.ID)
			})
			waitGuest(t, src, cfg.ID)
			exec1(t, src, cfg.ID, "echo in-memory-marker > /tmp/marker; echo on-disk-marker | dd of=/dev/vda bs=512 seek=1000 conv=fsync 2>/dev/null")
			before := uptime(t, src, cfg.ID)

			dcfg := cfg
			dcfg.Dir = filepath.Join(base, "b", "vm")
			os.MkdirAll(dcfg.Dir, 0o700)
			if disks { // no shared storage: the target has its own datastore
				dcfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(base, "ds-b", "mig1", "disk0.qcow2"), SizeBytes: 64 << 20, Bus: "virtio"}}
			}
			st := migrate(t, src, dst, dcfg, disks, hostname)
			t.Logf("%s: total %s, downtime %s, %d bytes, %d passes", name, st.TotalTime, st.Downtime, st.TransferredBytes, st.Pass)

			waitGuest(t, dst, cfg.ID)
			after := uptime(t, dst, cfg.ID)
			if after < before {
				t.Fatalf("the guest rebooted: uptime %.2f after, %.2f before", after, before)
			}
			if got := exec1(t, dst, cfg.ID, "cat /tmp/marker"); got != "in-memory-marker\n" {
				t.Fatalf("memory lost: %q", got)
			}
			if got := exec1(t, dst, cfg.ID, "dd if=/dev/vda bs=512 skip=1000 count=1 2>/dev/null | head -c 14"); got != "on-disk-marker" {
				t.Fatalf("disk data lost: %q", got)
			}
			if st, _ := dst.State(ctx, cfg.ID); st.Power != hypervisor.StateOn {
				t.Fatalf("target state %+v", st)
			}
			if _, err := src.State(ctx, cfg.ID); err == nil {
				t.Fatal("the source still has the VM")
			}
			if disks {
				if _, err := os.Stat(cfg.Disks[0].Path); !os.IsNotExist(err) {
					t.Fatalf("the source disk was not removed after moving: %v", err)
				}
				if info, err := disk.Inspect(ctx, dcfg.Disks[0].Path); err != nil || info.VirtualSize != 64<<20 {
					t.Fatalf("target disk: %+v %v", info, err)
				}
			}
		})
	}
}

// A cancelled migration leaves the VM running on the source, as it was;
// a disk move switches a running VM to new files with its data.
func TestCancelMigrationAndMoveDisks(t *testing.T) {
	g := testGuest(t)
	tls, hostname := tlsDir(t)
	ctx := context.Background()
	base := t.TempDir()
	src := newMigrationDriver(t, filepath.Join(base, "a"), tls)
	dst := newMigrationDriver(t, filepath.Join(base, "b"), tls)
	cfg := testConfig(g, filepath.Join(base, "a", "vm"), "mig2")
	os.MkdirAll(cfg.Dir, 0o700)
	os.MkdirAll(filepath.Join(base, "ds1"), 0o755)
	cfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(base, "ds1", "mig2", "disk0.qcow2"), SizeBytes: 64 << 20, Bus: "virtio"}}
	if err := src.Define(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := src.Start(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.PowerOff(context.Background(), cfg.ID) })
	waitGuest(t, src, cfg.ID)
	exec1(t, src, cfg.ID, "echo on-disk-marker | dd of=/dev/vda bs=512 seek=1000 conv=fsync 2>/dev/null")

	// Slow the migration right down so that cancel comes in the middle.
	dcfg := cfg
	dcfg.Dir = filepath.Join(base, "b", "vm")
	os.MkdirAll(dcfg.Dir, 0o700)
	in, err := dst.Incoming(ctx, dcfg, hypervisor.IncomingOptions{Address: "127.0.0.1", TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := src.MigrateOut(ctx, cfg.ID, hypervisor.MigrateTarget{URI: in.URI, TLSHostname: hostname, MaxBandwidth: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	// At 1 MiB/s it is still sending once the first bytes are out.
	for deadline := time.Now().Add(30 * time.Second); ; {
		st, err := src.MigrationStatus(ctx, cfg.ID)
		if err == nil && st.State == hypervisor.MigrationActive && st.TransferredBytes > 0 {
			break
		}
		if time.Now().After(deadline) || (err == nil && st.State != hypervisor.MigrationActive && st.State != hypervisor.MigrationSetup) {
			t.Fatalf("migration should be sending: %+v (%v)", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := src.CancelMigration(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	if err := dst.AbortIncoming(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ := src.MigrationStatus(ctx, cfg.ID); st.State != hypervisor.MigrationCancelled {
		t.Fatalf("after cancel: %+v", st)
	}
	if st, _ := src.State(ctx, cfg.ID); st.Power != hypervisor.StateOn {
		t.Fatalf("the source VM is %+v after a cancelled migration", st)
	}
	if got := exec1(t, src, cfg.ID, "echo alive"); got != "alive\n" {
		t.Fatalf("the source guest does not answer: %q", got)
	}
	if _, err := dst.State(ctx, cfg.ID); err == nil {
		t.Fatal("the target kept the aborted copy")
	}

	// The target is lost at the switch-over: everything was sent (disks
	// over NBD too) but the copy never ran. The source takes the VM back
	// and goes on with its own disk.
	tcfg := dcfg
	tcfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(base, "ds-b", "mig2", "disk0.qcow2"), SizeBytes: 64 << 20, Bus: "virtio"}}
	os.MkdirAll(filepath.Join(base, "ds-b"), 0o755)
	send(t, src, dst, tcfg, true, hostname)
	if err := src.CancelMigration(ctx, cfg.ID); err != nil {
		t.Fatalf("take the VM back after its migration completed: %v", err)
	}
	if err := dst.AbortIncoming(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	if got := exec1(t, src, cfg.ID, "echo taken-back | dd of=/dev/vda bs=512 seek=3000 conv=fsync 2>/dev/null && echo alive"); got != "alive\n" {
		t.Fatalf("the guest taken back does not write to its disk: %q", got)
	}
	if st, _ := src.State(ctx, cfg.ID); st.Power != hypervisor.StateOn {
		t.Fatalf("the VM taken back is %+v", st)
	}

	// Storage migration: the disk moves to another datastore while the VM runs.
	oldPath, newPath := cfg.Disks[0].Path, filepath.Join(base, "ds2", "mig2", "disk0.qcow2")
	if err := src.MoveDisks(ctx, cfg.ID, []hypervisor.DiskMove{{Name: "disk0", Path: newPath}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if st, _ := src.MigrationStatus(ctx, cfg.ID); st.State == hypervisor.MigrationCompleted || st.State == hypervisor.MigrationFailed {
			if st.State != hypervisor.MigrationCompleted {
				t.Fatalf("disk move: %+v", st)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(oldPath); !os.IsNotExist(err) {
		t.Fatalf("the old disk file is still there: %v", err)
	}
	if got := exec1(t, src, cfg.ID, "echo 3 > /proc/sys/vm/drop_caches; dd if=/dev/vda bs=512 skip=1000 count=1 2>/dev/null | head -c 14"); got != "on-disk-marker" {
		t.Fatalf("disk data after the move: %q", got)
	}
	exec1(t, src, cfg.ID, "echo after-move | dd of=/dev/vda bs=512 seek=2000 conv=fsync 2>/dev/null")
	src.PowerOff(ctx, cfg.ID)
	b, err := os.ReadFile(newPath)
	if err != nil || !strings.Contains(string(b), "after-move") {
		t.Fatalf("writes after the move do not reach the new file: %v", err)
	}
}
