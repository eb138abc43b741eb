package testguest

import (
	"bufio"
	"compress/gzip"
	"context"
	"debug/elf"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// ErrUnavailable marks a build that cannot run on this host because
// something it needs is missing (busybox, qemu-ga, a kernel and no way to
// download one); tests skip on it.
var ErrUnavailable = errors.New("test guest prerequisite unavailable")

// DefaultCmdline boots the guest with its console on the first serial port.
// panic=-1 turns a guest panic into a reset, which QEMU started with
// -no-reboot reports as an exit instead of hanging.
const DefaultCmdline = "console=ttyS0 panic=-1 quiet"

// Options says where a build writes and caches.
type Options struct {
	// OutDir receives vmlinuz, vmlinux (when extracted) and initrd.img.
	OutDir string
	// CacheDir keeps the downloaded Debian kernel package, extracted, and
	// the uncompressed kernel between builds ("" for a throwaway cache).
	// A cached Debian kernel is used without asking the mirror for a newer
	// one: empty the directory to refresh it.
	CacheDir string
	Log      *slog.Logger // nil discards
}

// Result is a built guest: boot it with -kernel Kernel -initrd Initrd
// -append Cmdline (plus " vdc.hostname=NAME" to name it).
type Result struct {
	// Kernel and Initrd are absolute paths in OutDir. Kernel is the
	// uncompressed kernel (vmlinux, booted through its PVH entry point,
	// about two seconds faster under TCG) when it could be extracted, else
	// the same file as BzImage.
	Kernel, Initrd string
	// BzImage is the kernel as distributed (vmlinuz), for firmware that
	// cannot boot a PVH ELF (UEFI/OVMF direct kernel boot).
	BzImage       string
	Cmdline       string
	KernelVersion string
}

//go:embed rootfs
var rootfs embed.FS

// Build writes a kernel and an initramfs that boot into busybox with
// qemu-ga, ACPI power-button handling, DHCP on every NIC and a TCP echo
// (see the package doc).
func Build(ctx context.Context, o Options) (Result, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.OutDir == "" {
		return Result{}, errors.New("build test guest: no output directory")
	}
	outDir, err := filepath.Abs(o.OutDir)
	if err != nil {
		return Result{}, fmt.Errorf("build test guest: %w", err)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Result{}, fmt.Errorf("build test guest: create output dir: %w", err)
	}
	start := time.Now()
	t, err := findHostTools(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("build test guest: %w", err)
	}
	cacheDir := o.CacheDir
	if cacheDir == "" {
		tmp, err := os.MkdirTemp("", "vdc-testguest-")
		if err != nil {
			return Result{}, fmt.Errorf("build test guest: %w", err)
		}
		defer os.RemoveAll(tmp)
		cacheDir = tmp
	}
	k, err := findKernel(ctx, cacheDir, log)
	if err != nil {
		return Result{}, fmt.Errorf("build test guest: %w", err)
	}
	im, nmods, err := buildImage(ctx, t, k, log)
	if err != nil {
		return Result{}, err
	}
	res := Result{
		BzImage:       filepath.Join(outDir, "vmlinuz"),
		Initrd:        filepath.Join(outDir, "initrd.img"),
		Cmdline:       DefaultCmdline,
		KernelVersion: k.version,
	}
	if res.Kernel, err = writeKernel(ctx, outDir, res.BzImage, k, cacheDir, log); err != nil {
		return Result{}, err
	}
	if err := writeInitrd(res.Initrd, im); err != nil {
		return Result{}, fmt.Errorf("build test guest: write initramfs: %w", err)
	}
	fi, _ := os.Stat(res.Initrd)
	log.Info("built test guest", "kernel", k.version, "modules", nmods,
		"initrd_bytes", fi.Size(), "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// hostTools are the host's programs the guest is made of: busybox, and
// qemu-ga with the shared libraries it needs.
type hostTools struct {
	busybox, qga string
	libs         []string
}

func findHostTools(ctx context.Context) (hostTools, error) {
	var t hostTools
	var err error
	if t.busybox, err = findBusybox(); err != nil {
		return t, err
	}
	if t.qga, err = findTool("qemu-ga", "/usr/sbin/qemu-ga", "qemu-guest-agent"); err != nil {
		return t, err
	}
	if t.libs, err = sharedLibraries(ctx, t.qga); err != nil {
		return t, err
	}
	return t, nil
}

// buildImage assembles the initramfs: the skeleton, busybox, our rootfs,
// qemu-ga and the kernel's modules (it returns how many).
func buildImage(ctx context.Context, t hostTools, k kernel, log *slog.Logger) (image, int, error) {
	im := image{}
	addSkeleton(im)
	if err := addBusybox(ctx, im, t.busybox); err != nil {
		return nil, 0, fmt.Errorf("build test guest: %w", err)
	}
	if err := addRootfs(im); err != nil {
		return nil, 0, fmt.Errorf("build test guest: %w", err)
	}
	im.HostFile("usr/sbin/qemu-ga", 0o755, t.qga)
	for _, lib := range t.libs {
		im.HostFile(lib, 0o755, lib)
	}
	nmods, err := addModules(ctx, im, k, log)
	if err != nil {
		return nil, 0, fmt.Errorf("build test guest: kernel %s: %w", k.version, err)
	}
	return im, nmods, nil
}

// writeKernel writes the kernel as distributed to bzImage and, when it can
// be extracted, the uncompressed one next to it; it returns the one to
// boot.
func writeKernel(ctx context.Context, outDir, bzImage string, k kernel, cacheDir string, log *slog.Logger) (string, error) {
	if err := writeAtomic(bzImage, func(w io.Writer) error { return copyFile(w, k.image) }); err != nil {
		return "", fmt.Errorf("build test guest: write kernel: %w", err)
	}
	vmlinux := filepath.Join(outDir, "vmlinux")
	pvh, err := pvhKernel(ctx, k.image, cacheDir)
	if err != nil {
		log.Info("booting the compressed kernel", "reason", err)
		// A vmlinux from an earlier build must not pass for this kernel.
		if err := os.Remove(vmlinux); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("build test guest: remove stale kernel: %w", err)
		}
		return bzImage, nil
	}
	if err := writeAtomic(vmlinux, func(w io.Writer) error { return copyFile(w, pvh) }); err != nil {
		return "", fmt.Errorf("build test guest: write kernel: %w", err)
	}
	return vmlinux, nil
}

// writeInitrd writes the image as a gzipped cpio archive.
func writeInitrd(path string, im image) error {
	return writeAtomic(path, func(w io.Writer) error {
		// The kernel inflates this at every boot and the build writes it
		// every time; BestSpeed costs a few percent in size only.
		zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
		if err != nil {
			return err
		}
		if err := im.writeCPIO(zw); err != nil {
			return err
		}
		return zw.Close()
	})
}

// addSkeleton adds the directory layout and the console node the kernel
// opens for init before anything is mounted.
func addSkeleton(im image) {
	for _, d := range []string{"dev", "proc", "sys", "run", "root", "var/log", "etc/vdc", "usr/bin", "usr/sbin", "sbin", "bin", "lib"} {
		im.Dir(d, 0o755)
	}
	im.Dir("tmp", 0o1777)
	im.Symlink("var/run", "../run")
	im.CharDev("dev/console", 0o600, 5, 1)
	im.CharDev("dev/null", 0o666, 1, 3)
}

// addRootfs adds our scripts and config (the embedded rootfs tree). It
// runs after addBusybox so that a script replaces an applet of its name.
func addRootfs(im image) error {
	return fs.WalkDir(rootfs, "rootfs", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := rootfs.ReadFile(p)
		if err != nil {
			return err
		}
		perm := uint32(0o644)
		if strings.HasPrefix(string(data), "#!") {
			perm = 0o755
		}
		im.File(strings.TrimPrefix(p, "rootfs/"), perm, data)
		return nil
	})
}

// addBusybox installs busybox with a link for every applet, where busybox
// says it belongs and in /bin too (guest-exec callers often say /bin/x).
// /init is busybox itself, which runs as init when started as pid 1.
func addBusybox(ctx context.Context, im image, busybox string) error {
	out, err := runTool(ctx, "", busybox, "--list-full")
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	im.HostFile("bin/busybox", 0o755, busybox)
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		name := path.Base(p)
		if p == "" || name == "busybox" || name == "linuxrc" {
			continue
		}
		for _, at := range []string{p, "bin/" + name} {
			if !im.has(at) {
				im.Symlink(at, "/bin/busybox")
			}
		}
	}
	im.Symlink("init", "bin/busybox")
	return nil
}

// addModules stores the wanted modules (decompressed) with a modules.dep
// for them, and the load order rcS follows: the power-button modules in
// /etc/vdc/modules.early, the rest in /etc/vdc/modules.
func addModules(ctx context.Context, im image, k kernel, log *slog.Logger) (int, error) {
	idx, err := loadModuleIndex(ctx, k.modDir)
	if err != nil {
		return 0, err
	}
	early, missEarly, err := idx.loadOrder(earlyModules, nil)
	if err != nil {
		return 0, err
	}
	loaded := map[string]bool{}
	for _, p := range early {
		loaded[moduleName(p)] = true
	}
	rest, missRest, err := idx.loadOrder(guestModules, loaded)
	if err != nil {
		return 0, err
	}
	for _, name := range append(missEarly, missRest...) {
		if requiredModules[name] {
			return 0, fmt.Errorf("module %s is neither in %s/modules.dep nor built in", name, k.modDir)
		}
		log.Warn("kernel has no such module, guest goes without it", "module", name, "kernel", k.version)
	}
	guestDir := "lib/modules/" + k.version
	// Modules are stored decompressed, so their names lose the suffix.
	rel := func(p string) string {
		for _, ext := range []string{".xz", ".zst", ".gz"} {
			if plain, ok := strings.CutSuffix(p, ext); ok {
				return plain
			}
		}
		return p
	}
	// A modules.dep for what is shipped lets busybox modprobe work in the
	// guest too.
	var dep strings.Builder
	for _, list := range [][]string{early, rest} {
		for _, p := range list {
			data, err := readModule(ctx, filepath.Join(k.modDir, p))
			if err != nil {
				return 0, err
			}
			im.File(guestDir+"/"+rel(p), 0o644, data)
			dep.WriteString(rel(p) + ":")
			for _, d := range idx.deps[p] {
				dep.WriteString(" " + rel(d))
			}
			dep.WriteString("\n")
		}
	}
	im.File(guestDir+"/modules.dep", 0o644, []byte(dep.String()))
	if data, err := os.ReadFile(filepath.Join(k.modDir, "modules.builtin")); err == nil {
		im.File(guestDir+"/modules.builtin", 0o644, data)
	}
	list := func(ps []string) []byte {
		var b strings.Builder
		for _, p := range ps {
			b.WriteString("/" + guestDir + "/" + rel(p) + "\n")
		}
		return []byte(b.String())
	}
	im.File("etc/vdc/modules.early", 0o644, list(early))
	im.File("etc/vdc/modules", 0o644, list(rest))
	im.File("etc/vdc/kernel", 0o644, []byte(k.version+"\n"))
	return len(early) + len(rest), nil
}

// findBusybox returns a statically linked busybox: the guest has no libc
// of its own beyond what qemu-ga needs, and applets must run anywhere.
func findBusybox() (string, error) {
	p, err := findTool("busybox", "/bin/busybox", "busybox-static")
	if err != nil {
		return "", err
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("%s is dynamically linked; install busybox-static: %w", p, ErrUnavailable)
		}
	}
	return p, nil
}

// findTool looks for a host binary at its usual path, then in PATH.
func findTool(name, usual, pkg string) (string, error) {
	if fi, err := os.Stat(usual); err == nil && fi.Mode().IsRegular() {
		return usual, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (apt-get install %s): %w", name, pkg, ErrUnavailable)
	}
	return filepath.Abs(p)
}

// sharedLibraries lists the files the dynamic loader needs to run bin on
// this host, the loader included, as absolute host paths (which are also
// the paths they get in the guest).
func sharedLibraries(ctx context.Context, bin string) ([]string, error) {
	var libs []string
	seen := map[string]bool{}
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			libs = append(libs, p)
		}
	}
	f, err := elf.Open(bin)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", bin, err)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			interp, err := io.ReadAll(prog.Open())
			if err == nil {
				add(strings.TrimRight(string(interp), "\x00"))
			}
		}
	}
	f.Close()
	if len(libs) == 0 {
		return nil, nil // static: nothing to add
	}
	out, err := runTool(ctx, "", "ldd", bin)
	if err != nil {
		return nil, fmt.Errorf("list libraries of %s: %w", bin, err)
	}
	got, err := parseLdd(string(out))
	if err != nil {
		return nil, fmt.Errorf("libraries of %s: %w", bin, err)
	}
	for _, p := range got {
		add(p)
	}
	return libs, nil
}

// parseLdd reads ldd's output: "name => /path (addr)" for libraries,
// "/path (addr)" for the loader, and no path for the vDSO.
func parseLdd(out string) ([]string, error) {
	var libs []string
	for line := range strings.Lines(out) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if name, where, ok := strings.Cut(line, "=>"); ok {
			where = strings.TrimSpace(where)
			if strings.HasPrefix(where, "not found") {
				return nil, fmt.Errorf("library %s not found", strings.TrimSpace(name))
			}
			if p, _, _ := strings.Cut(where, " "); strings.HasPrefix(p, "/") {
				libs = append(libs, p)
			}
			continue
		}
		if p, _, _ := strings.Cut(line, " "); strings.HasPrefix(p, "/") {
			libs = append(libs, p)
		}
	}
	return libs, nil
}

// writeAtomic writes a file through a temporary name, so that a VM booting
// from OutDir never sees a half-written kernel or initramfs.
func writeAtomic(dst string, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", dst, err)
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", dst, err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dst)
}

func copyFile(w io.Writer, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
