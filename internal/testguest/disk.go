package testguest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// BootDisk writes the test guest as a bootable raw disk image: a FAT file
// system (no partition table: SeaBIOS boots its first sector) with SYSLINUX
// in its boot sector, the kernel, the initramfs and a syslinux.cfg that
// boots them. It is what a guest made elsewhere looks like to vdc — a disk
// that boots on its own — so converting it to other formats and importing
// it shows that a converted VM boots. Needs mkfs.fat (dosfstools), mcopy
// (mtools) and syslinux; ErrUnavailable without them.
func BootDisk(ctx context.Context, g Result, out string, sizeMiB int) error {
	for _, tool := range []string{"mkfs.fat", "mcopy", "syslinux"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				return fmt.Errorf("%w: %s is not installed (apt-get install dosfstools mtools syslinux)", ErrUnavailable, tool)
			}
		}
	}
	kernel := g.BzImage
	if kernel == "" {
		kernel = g.Kernel
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("boot disk: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	_ = os.Remove(out)
	if err := run("mkfs.fat", "-C", "-n", "VDCTEST", out, strconv.Itoa(sizeMiB*1024)); err != nil {
		return err
	}
	cfg := filepath.Join(filepath.Dir(out), "syslinux.cfg")
	err := os.WriteFile(cfg, []byte("DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  KERNEL /vmlinuz\n  APPEND initrd=/initrd.img "+g.Cmdline+"\n"), 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(cfg)
	env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	for src, dst := range map[string]string{kernel: "::/vmlinuz", g.Initrd: "::/initrd.img", cfg: "::/syslinux.cfg"} {
		cmd := exec.CommandContext(ctx, "mcopy", "-i", out, src, dst)
		cmd.Env = env
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("boot disk: mcopy %s: %v: %s", src, err, b)
		}
	}
	return run("syslinux", "--install", out)
}
