package testguest

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// kernel is a kernel image and the modules built for it.
type kernel struct {
	image   string // vmlinuz
	modDir  string // .../lib/modules/<version>
	version string
}

// debianMetaPackage always depends on the current Debian kernel package.
const debianMetaPackage = "linux-image-amd64"

// completeMarker is written into a cache entry once it is fully extracted,
// so that an interrupted extraction is never mistaken for a kernel.
const completeMarker = ".vdc-complete"

// findKernel picks the host's running kernel when its image and modules are
// both readable, else a Debian kernel package (cached or downloaded).
// cacheDir must be usable (the caller makes a temporary one when the user
// gave none).
func findKernel(ctx context.Context, cacheDir string, log *slog.Logger) (kernel, error) {
	k, err := hostKernel()
	if err == nil {
		log.Info("using the host's kernel", "version", k.version, "image", k.image)
		return k, nil
	}
	log.Info("host kernel not usable, using Debian's", "reason", err)
	return debianKernel(ctx, cacheDir, log)
}

func hostKernel() (kernel, error) {
	rel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return kernel{}, fmt.Errorf("read running kernel version: %w", err)
	}
	version := strings.TrimSpace(string(rel))
	k := kernel{
		image:   filepath.Join("/boot", "vmlinuz-"+version),
		modDir:  filepath.Join("/lib/modules", version),
		version: version,
	}
	// Some distributions make /boot/vmlinuz-* readable by root only.
	f, err := os.Open(k.image)
	if err != nil {
		return kernel{}, err
	}
	f.Close()
	if _, err := os.Stat(filepath.Join(k.modDir, "kernel")); err != nil {
		return kernel{}, fmt.Errorf("modules of kernel %s: %w", version, err)
	}
	return k, nil
}

// debianKernel returns the newest kernel already extracted in cacheDir, or
// downloads linux-image-amd64's current kernel package with apt-get (the
// host's apt sources decide the mirror) and extracts it there.
func debianKernel(ctx context.Context, cacheDir string, log *slog.Logger) (kernel, error) {
	if k, err := cachedKernel(cacheDir); err == nil {
		log.Info("using cached Debian kernel", "version", k.version, "dir", filepath.Dir(filepath.Dir(k.image)))
		return k, nil
	}
	for _, tool := range []string{"apt-get", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return kernel{}, fmt.Errorf("get a kernel: the host has no /boot/vmlinuz-$(uname -r) with /lib/modules, and %s is not installed to download Debian's %s; install a kernel package: %w",
				tool, debianMetaPackage, ErrUnavailable)
		}
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return kernel{}, fmt.Errorf("create kernel cache dir: %w", err)
	}
	work, err := os.MkdirTemp(cacheDir, "work-")
	if err != nil {
		return kernel{}, fmt.Errorf("create kernel download dir: %w", err)
	}
	defer os.RemoveAll(work)

	start := time.Now()
	meta, err := aptDownload(ctx, work, debianMetaPackage)
	if err != nil {
		return kernel{}, err
	}
	out, err := runTool(ctx, "", "dpkg-deb", "-f", meta, "Depends")
	if err != nil {
		return kernel{}, fmt.Errorf("read dependencies of %s: %w", meta, err)
	}
	pkg, version, err := kernelDependency(string(out))
	if err != nil {
		return kernel{}, fmt.Errorf("%s (%s): %w", debianMetaPackage, filepath.Base(meta), err)
	}
	dest := filepath.Join(cacheDir, pkg+"_"+version)
	if k, err := kernelIn(dest); err == nil {
		log.Info("using cached Debian kernel", "version", k.version, "dir", dest)
		return k, nil
	}
	spec := pkg
	if version != "" {
		spec += "=" + version
	}
	deb, err := aptDownload(ctx, work, spec)
	if err != nil {
		return kernel{}, err
	}
	log.Info("downloaded Debian kernel package", "package", filepath.Base(deb), "took", time.Since(start).Round(time.Millisecond))

	tree := filepath.Join(work, "tree")
	if _, err := runTool(ctx, "", "dpkg-deb", "-x", deb, tree); err != nil {
		return kernel{}, fmt.Errorf("extract %s: %w", filepath.Base(deb), err)
	}
	if err := os.WriteFile(filepath.Join(tree, completeMarker), nil, 0o644); err != nil {
		return kernel{}, fmt.Errorf("mark kernel cache entry: %w", err)
	}
	// Keep the .deb too, so that the cache says where the kernel came from.
	if err := os.Rename(deb, filepath.Join(tree, filepath.Base(deb))); err != nil {
		return kernel{}, fmt.Errorf("keep %s: %w", filepath.Base(deb), err)
	}
	if err := os.Rename(tree, dest); err != nil {
		// Another build may have extracted the same package meanwhile.
		if k, err2 := kernelIn(dest); err2 == nil {
			return k, nil
		}
		return kernel{}, fmt.Errorf("store extracted kernel in cache: %w", err)
	}
	log.Info("extracted Debian kernel", "dir", dest, "took", time.Since(start).Round(time.Millisecond))
	return kernelIn(dest)
}

// cachedKernel returns the most recently extracted kernel in cacheDir.
func cachedKernel(cacheDir string) (kernel, error) {
	entries, err := os.ReadDir(cacheDir)
	if err != nil {
		return kernel{}, err
	}
	var best kernel
	var bestTime time.Time
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "linux-image-") {
			continue
		}
		dir := filepath.Join(cacheDir, e.Name())
		fi, err := os.Stat(filepath.Join(dir, completeMarker))
		if err != nil {
			continue
		}
		k, err := kernelIn(dir)
		if err == nil && fi.ModTime().After(bestTime) {
			best, bestTime = k, fi.ModTime()
		}
	}
	if best.image == "" {
		return kernel{}, fs.ErrNotExist
	}
	return best, nil
}

// kernelIn finds the kernel image and its modules in an extracted package.
func kernelIn(dir string) (kernel, error) {
	if _, err := os.Stat(filepath.Join(dir, completeMarker)); err != nil {
		return kernel{}, err
	}
	images, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(images) != 1 {
		return kernel{}, fmt.Errorf("kernel package in %s: want one boot/vmlinuz-*, found %d", dir, len(images))
	}
	version := strings.TrimPrefix(filepath.Base(images[0]), "vmlinuz-")
	// Packages for merged-/usr releases (Debian 13) ship /usr/lib/modules.
	for _, modules := range []string{"lib/modules", "usr/lib/modules"} {
		modDir := filepath.Join(dir, modules, version)
		if _, err := os.Stat(filepath.Join(modDir, "kernel")); err == nil {
			return kernel{image: images[0], modDir: modDir, version: version}, nil
		}
	}
	return kernel{}, fmt.Errorf("kernel package in %s: no lib/modules/%s/kernel", dir, version)
}

// kernelDependency picks the versioned kernel package out of the meta
// package's Depends field, e.g.
// "linux-image-6.1.0-56-amd64 (= 6.1.192-2)" -> name, "6.1.192-2".
func kernelDependency(depends string) (name, version string, err error) {
	for _, dep := range strings.Split(depends, ",") {
		for _, alt := range strings.Split(dep, "|") {
			alt = strings.TrimSpace(alt)
			name, constraint, _ := strings.Cut(alt, " ")
			name = strings.TrimSuffix(name, ":any")
			if !strings.HasPrefix(name, "linux-image-") || strings.HasSuffix(name, "-unsigned") {
				continue
			}
			constraint = strings.Trim(strings.TrimSpace(constraint), "()")
			if v, ok := strings.CutPrefix(constraint, "="); ok {
				version = strings.TrimSpace(v)
			}
			return name, version, nil
		}
	}
	return "", "", fmt.Errorf("no linux-image-* package in Depends %q", strings.TrimSpace(depends))
}

// aptDownload fetches one package's .deb into dir and returns its path.
func aptDownload(ctx context.Context, dir, spec string) (string, error) {
	before, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	if _, err := runTool(ctx, dir, "apt-get", "download", spec); err != nil {
		return "", fmt.Errorf("apt-get download %s failed: %w; install a kernel or give network access to the Debian mirror (and run apt-get update): %w",
			spec, err, ErrUnavailable)
	}
	after, _ := filepath.Glob(filepath.Join(dir, "*.deb"))
	name, _, _ := strings.Cut(spec, "=")
	for _, p := range after {
		if !slices.Contains(before, p) && strings.HasPrefix(filepath.Base(p), name+"_") {
			return p, nil
		}
	}
	return "", fmt.Errorf("apt-get download %s: no %s_*.deb appeared in %s", spec, name, dir)
}

// runTool runs a host tool and returns its stdout; the error carries its
// stderr, which is where apt and dpkg say what went wrong.
func runTool(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "..." + msg[len(msg)-2000:]
		}
		if msg == "" {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return nil, fmt.Errorf("%s: %w: %s", name, err, msg)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return stdout.Bytes(), nil
}
