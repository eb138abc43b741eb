// Package kvmprobe tells whether KVM really runs guests here, and faster
// than TCG: /dev/kvm existing (or even opening) is not enough. It boots a
// one-sector probe guest under both accelerators and compares. It needs no
// VM and no driver state.
package kvmprobe

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// probeSector is a boot sector that switches to 32-bit protected mode,
// writes 16 MiB over a 2 MiB buffer (4M stores) and then prints "vdc" on
// the debug console port 0xe9. Real-mode code alone is not a fair test: on
// some hosts (nested virtualization without hardware paging support) KVM
// runs it fine but crawls once the guest uses memory, so that a Linux
// kernel takes minutes to decompress.
var probeSector = func() []byte {
	code, err := hex.DecodeString("" +
		"fa0f0116687c0f20c06683c8010f22c0ea157c080066b810008ed88ed08ec0" + // cli; lgdt; cr0.PE; jmp 08:pm; segments
		"b900004000bf00001000890783c70481ff000030007205bf000010004975eb" + // the store loop
		"b076e6e9b064e6e9b063e6e9faf4ebfe" + // out 'v','d','c'; cli; hlt
		"90900000000000000000ffff0000009acf00ffff00000092cf001700507c0000") // GDT and its descriptor
	if err != nil {
		panic(err)
	}
	s := make([]byte, 512)
	copy(s, code)
	s[510], s[511] = 0x55, 0xAA
	return s
}()

// probe runs the probe guest under an accelerator and returns how long it
// took to finish, or an error if it did not within limit.
func probe(ctx context.Context, binary, img, accel string, limit time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, limit+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "-accel", accel, "-machine", "pc", "-nodefaults", "-no-user-config",
		"-display", "none", "-drive", "file="+img+",format=raw,if=floppy", "-debugcon", "stdio", "-no-reboot")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	// The probe dies with the agent, even a killed one.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	spoke := make(chan bool, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(out, 3))
		spoke <- string(b) == "vdc"
	}()
	select {
	case ok := <-spoke:
		if !ok {
			return 0, fmt.Errorf("the probe guest failed under %s: %s", accel, strings.TrimSpace(errb.String()))
		}
		return time.Since(start), nil
	case <-time.After(limit):
		return 0, fmt.Errorf("the probe guest did not finish under %s within %s", accel, limit)
	}
}

// KVM checks that KVM really runs guests, and faster than TCG:
// /dev/kvm existing (or even opening) is not enough. It returns nil when
// KVM should be used, else why not.
func KVM(ctx context.Context, binary string) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	f.Close()
	dir, err := os.MkdirTemp("", "vdc-kvm-probe")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "probe.img")
	if err := os.WriteFile(img, probeSector, 0o600); err != nil {
		return err
	}
	tcg, err := probe(ctx, binary, img, "tcg", 20*time.Second)
	if err != nil {
		return fmt.Errorf("cannot compare with TCG: %w", err)
	}
	// KVM must at least match TCG (with room for its start-up).
	kvm, err := probe(ctx, binary, img, "kvm", 2*tcg+time.Second)
	if err != nil {
		return fmt.Errorf("KVM is slower than software emulation here (TCG ran the probe in %s): %w", tcg.Round(time.Millisecond), err)
	}
	if kvm > 2*tcg+time.Second {
		return fmt.Errorf("KVM ran the probe in %s, TCG in %s", kvm.Round(time.Millisecond), tcg.Round(time.Millisecond))
	}
	return nil
}
