package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/hypervisor"
)

// guestShape is what the guest itself says it has: vCPUs online and
// MemTotal, in KiB.
func guestShape(t *testing.T, d *Driver, id string) (cpus int, memKiB int64) {
	t.Helper()
	out := strings.Fields(exec1(t, d, id, "cat /sys/devices/system/cpu/online; grep MemTotal /proc/meminfo"))
	// "0-1" or "0"
	online := out[0]
	if i := strings.LastIndexAny(online, "-,"); i >= 0 {
		n, _ := strconv.Atoi(online[i+1:])
		cpus = n + 1
	} else {
		cpus = 1
	}
	memKiB, _ = strconv.ParseInt(out[2], 10, 64)
	return cpus, memKiB
}

// vCPUs and memory hot-added to a running guest come online in it (the
// test guest has no udev rule: the guest agent brings them online), stay
// through a live migration to a copy built with the same hardware, and
// through a revert to a memory snapshot taken after the hot-add.
func TestHotAddRealGuestMigrationAndRevert(t *testing.T) {
	g := testGuest(t)
	tls, hostname := tlsDir(t)
	ctx := context.Background()
	base := t.TempDir()
	src := newMigrationDriver(t, filepath.Join(base, "a"), tls)
	dst := newMigrationDriver(t, filepath.Join(base, "b"), tls)
	cfg := testConfig(g, filepath.Join(base, "a", "vm"), "hot1")
	cfg.MemoryBytes, cfg.MaxCPUs, cfg.MaxMemoryBytes = 256<<20, 4, 1<<30
	os.MkdirAll(cfg.Dir, 0o700)
	os.MkdirAll(filepath.Join(base, "ds"), 0o755)
	cfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: filepath.Join(base, "ds", "hot1", "disk0.qcow2"), SizeBytes: 64 << 20, Bus: "virtio"}}
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
	cpus0, mem0 := guestShape(t, src, cfg.ID)
	if cpus0 != 1 {
		t.Fatalf("the guest starts with %d vCPUs online, want 1", cpus0)
	}

	res, err := src.HotAdd(ctx, cfg.ID, 3, 512<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("hot-add: %s", res.Guest)
	if !strings.Contains(res.Guest, "brought 2 vCPUs and 256 MiB of memory online") {
		t.Errorf("hot-add says %q of the guest", res.Guest)
	}
	cpus1, mem1 := guestShape(t, src, cfg.ID)
	if cpus1 != 3 || mem1-mem0 != 256<<10 {
		t.Fatalf("the guest has %d vCPUs and %d KiB after the hot-add, want 3 and %d+%d KiB", cpus1, mem1, mem0, 256<<10)
	}
	var summary struct {
		Base    int64 `json:"base-memory"`
		Plugged int64 `json:"plugged-memory"`
	}
	v, _ := src.get(cfg.ID)
	if err := v.query(ctx, "query-memory-size-summary", &summary); err != nil || summary.Base != 256<<20 || summary.Plugged != 256<<20 {
		t.Fatalf("QEMU's memory: %+v %v", summary, err)
	}
	// Hot-remove is refused, and so is more than the room.
	if _, err := src.HotAdd(ctx, cfg.ID, 2, 0); !errors.Is(err, hypervisor.ErrInvalid) || !strings.Contains(err.Error(), "cannot be removed") {
		t.Fatalf("hot-remove of a vCPU: %v", err)
	}
	if _, err := src.HotAdd(ctx, cfg.ID, 5, 0); !errors.Is(err, hypervisor.ErrInvalid) {
		t.Fatalf("a vCPU beyond max-cpus: %v", err)
	}

	// A memory snapshot after the hot-add, reverted to below.
	memFile := filepath.Join(base, "ds", "hot1", "snap.mem")
	ov := filepath.Join(base, "ds", "hot1", "disk0-1.qcow2")
	snap, err := src.Snapshot(ctx, cfg.ID, hypervisor.SnapshotRequest{Overlays: map[string]string{"disk0": ov}, MemoryFile: memFile})
	if err != nil || !snap.Memory || snap.Hardware == nil || snap.Hardware.TotalCPUs() != 3 || snap.Hardware.TotalMemory() != 512<<20 {
		t.Fatalf("memory snapshot: %+v %v", snap, err)
	}

	// Live migration: the target is built with the source's hardware.
	hw, err := src.Hardware(ctx, cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	exec1(t, src, cfg.ID, "echo in-memory-marker > /tmp/marker")
	dcfg := cfg
	dcfg.Dir = filepath.Join(base, "b", "vm")
	os.MkdirAll(dcfg.Dir, 0o700)
	dcfg.Disks = []hypervisor.DiskConfig{{Name: "disk0", Path: ov, SizeBytes: 64 << 20, Bus: "virtio"}}
	dcfg.CPUs, dcfg.MemoryBytes, dcfg.Hardware = 3, 512<<20, &hw
	migrate(t, src, dst, dcfg, false, hostname)
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := dst.ConsoleLog(context.Background(), cfg.ID, 8<<10)
			t.Logf("console of the target:\n%s", log)
		}
	})
	waitGuest(t, dst, cfg.ID)
	if got := exec1(t, dst, cfg.ID, "cat /tmp/marker"); got != "in-memory-marker\n" {
		t.Fatalf("memory lost in the migration: %q", got)
	}
	if c, m := guestShape(t, dst, cfg.ID); c != 3 || m != mem1 {
		t.Fatalf("after the migration the guest has %d vCPUs and %d KiB, want 3 and %d", c, m, mem1)
	}
	dhw, err := dst.Hardware(ctx, cfg.ID)
	if err != nil || dhw.TotalCPUs() != 3 || dhw.TotalMemory() != 512<<20 || len(dhw.DIMMs) != 1 {
		t.Fatalf("target hardware %+v %v", dhw, err)
	}
	// It grows on the target too.
	if _, err := dst.HotAdd(ctx, cfg.ID, 4, 0); err != nil {
		t.Fatal(err)
	}

	// Revert to the snapshot: back to 3 vCPUs and 512 MiB, running.
	ov2 := filepath.Join(base, "ds", "hot1", "disk0-2.qcow2")
	err = dst.Revert(ctx, cfg.ID, hypervisor.RevertRequest{Disks: []hypervisor.DiskConfig{{Name: "disk0", Path: ov2, SizeBytes: 64 << 20, Bus: "virtio", Source: cfg.Disks[0].Path}},
		CPUs: 3, MemoryBytes: 512 << 20, MemoryFile: memFile, Hardware: snap.Hardware})
	if err != nil {
		t.Fatal(err)
	}
	waitGuest(t, dst, cfg.ID)
	if c, m := guestShape(t, dst, cfg.ID); c != 3 || m != mem1 {
		t.Fatalf("after the revert the guest has %d vCPUs and %d KiB, want 3 and %d", c, m, mem1)
	}

	// A fresh boot folds it all into the base: 3 vCPUs, 512 MiB, no DIMM.
	if err := dst.PowerOff(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	if err := dst.Start(ctx, cfg.ID); err != nil {
		t.Fatal(err)
	}
	bhw, err := dst.Hardware(ctx, cfg.ID)
	if err != nil || bhw.CPUs != 3 || bhw.MemoryBytes != api.Size(512<<20) || len(bhw.HotCPUs) != 0 || len(bhw.DIMMs) != 0 {
		t.Fatalf("hardware after a power cycle: %+v %v", bhw, err)
	}
}
