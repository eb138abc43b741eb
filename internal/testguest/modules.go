package testguest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// earlyModules are loaded first and on their own, so that the ACPI power
// button is armed (and acpid can listen to it) before the slower virtio
// stack is probed: a power-button press is only seen once button.ko has
// enabled the event.
var earlyModules = []string{"evdev", "button"}

// guestModules are the drivers for the devices a vdc VM has: virtio disks,
// the NIC models vdc offers (virtio, e1000, rtl8139: QEMU's is an
// RTL8139C+, which 8139cp drives) and the agent's serial port, plus the
// SATA/SCSI disks and CD-ROMs that imported VMs or install media use, and
// ISO 9660 to read cloud-init seeds. Dependencies come from modules.dep.
var guestModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "virtio_console",
	"virtio_balloon", "virtio_rng", "e1000", "8139cp",
	"sd_mod", "sr_mod", "ahci", "isofs",
}

// requiredModules must be present (as a module or built in): without them
// the guest cannot do its job (agent channel, power button, a driver for
// every NIC model a VM can have).
var requiredModules = map[string]bool{
	"evdev": true, "button": true, "virtio_pci": true, "virtio_console": true,
	"virtio_net": true, "e1000": true, "8139cp": true,
}

// moduleName turns a module path or name into the name modprobe uses:
// "kernel/drivers/virtio/virtio-pci.ko.xz" -> "virtio_pci".
func moduleName(p string) string {
	n := path.Base(p)
	for _, ext := range []string{".ko.xz", ".ko.zst", ".ko.gz", ".ko"} {
		if strings.HasSuffix(n, ext) {
			n = strings.TrimSuffix(n, ext)
			break
		}
	}
	return strings.ReplaceAll(n, "-", "_")
}

// moduleIndex knows where each module of one kernel lives and what it needs.
type moduleIndex struct {
	path    map[string]string   // name -> path relative to the modules dir
	deps    map[string][]string // path -> dependency paths, as modules.dep lists them
	builtin map[string]bool     // names built into the kernel
}

// parseModulesDep reads modules.dep ("path: dep dep ...", one module a line).
func parseModulesDep(r io.Reader) (*moduleIndex, error) {
	idx := &moduleIndex{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(text, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return nil, fmt.Errorf("modules.dep line %d: no \"module:\" in %q", line, text)
		}
		mod = strings.TrimSpace(mod)
		idx.path[moduleName(mod)] = mod
		idx.deps[mod] = strings.Fields(deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	return idx, nil
}

// parseModulesBuiltin reads modules.builtin (one path a line).
func (idx *moduleIndex) parseModulesBuiltin(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p := strings.TrimSpace(sc.Text()); p != "" {
			idx.builtin[moduleName(p)] = true
		}
	}
	return sc.Err()
}

// loadOrder returns the module paths to load, dependencies first, for the
// wanted modules (names) and everything they need. Names in skip (already
// loaded) and built-in modules are left out; wanted modules that are
// neither a module nor built in are returned in missing.
func (idx *moduleIndex) loadOrder(want []string, skip map[string]bool) (order, missing []string, err error) {
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(p string, chain []string) error
	visit = func(p string, chain []string) error {
		switch state[p] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, p), " -> "))
		}
		state[p] = visiting
		deps := idx.deps[p]
		// modprobe loads a modules.dep line right to left; follow it.
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], append(chain, p)); err != nil {
				return err
			}
		}
		state[p] = done
		if !skip[moduleName(p)] {
			order = append(order, p)
		}
		return nil
	}
	for _, name := range want {
		name = moduleName(name)
		p, ok := idx.path[name]
		switch {
		case ok:
			if err := visit(p, nil); err != nil {
				return nil, nil, err
			}
		case idx.builtin[name]:
		default:
			missing = append(missing, name)
		}
	}
	return order, missing, nil
}

// loadModuleIndex reads modules.dep and modules.builtin from a kernel's
// modules dir. Debian's kernel package does not ship modules.dep (its
// postinst runs depmod), so without one the index is built from the
// modules' own .modinfo "depends=" fields.
func loadModuleIndex(ctx context.Context, dir string) (*moduleIndex, error) {
	var idx *moduleIndex
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	switch {
	case err == nil:
		idx, err = parseModulesDep(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	case errors.Is(err, fs.ErrNotExist):
		idx, err = indexFromModinfo(ctx, dir)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("read modules.dep: %w", err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		err = idx.parseModulesBuiltin(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s/modules.builtin: %w", dir, err)
		}
	}
	return idx, nil
}

// indexFromModinfo finds every module under dir by name and reads the
// dependencies of those this package may need (the wanted ones and, in
// turn, theirs). Reading all ~4000 modules would cost seconds for nothing.
func indexFromModinfo(ctx context.Context, dir string) (*moduleIndex, error) {
	idx := &moduleIndex{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			rel, _ := filepath.Rel(dir, p)
			idx.path[moduleName(rel)] = filepath.ToSlash(rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list kernel modules in %s: %w", dir, err)
	}
	if len(idx.path) == 0 {
		return nil, fmt.Errorf("no kernel modules (*.ko) under %s/kernel", dir)
	}
	queue := append(slices.Clone(earlyModules), guestModules...)
	for len(queue) > 0 {
		name := moduleName(queue[0])
		queue = queue[1:]
		p, ok := idx.path[name]
		if !ok {
			continue
		}
		if _, seen := idx.deps[p]; seen {
			continue
		}
		data, err := readModule(ctx, filepath.Join(dir, p))
		if err != nil {
			return nil, err
		}
		names, err := modinfoDepends(data)
		if err != nil {
			return nil, fmt.Errorf("read dependencies of %s: %w", p, err)
		}
		deps := []string{}
		for _, n := range names {
			dp, ok := idx.path[moduleName(n)]
			if !ok {
				return nil, fmt.Errorf("module %s depends on %s, which is not under %s", p, n, dir)
			}
			deps = append(deps, dp)
			queue = append(queue, n)
		}
		idx.deps[p] = deps
	}
	return idx, nil
}

// modinfoDepends returns the "depends=" list of a module's .modinfo section.
func modinfoDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	info, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	for _, field := range bytes.Split(info, []byte{0}) {
		if v, ok := bytes.CutPrefix(field, []byte("depends=")); ok {
			var deps []string
			for _, d := range strings.Split(string(v), ",") {
				if d = strings.TrimSpace(d); d != "" {
					deps = append(deps, d)
				}
			}
			return deps, nil
		}
	}
	return nil, nil
}

// readModule returns a module's ELF bytes. Compressed modules are
// decompressed here because busybox insmod only loads plain ELF files;
// xz and zstd have no decoder in the standard library, so their tools do it.
func readModule(ctx context.Context, p string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko"):
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read kernel module: %w", err)
		}
		return data, nil
	case strings.HasSuffix(p, ".ko.gz"):
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("read kernel module: %w", err)
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		data, err := io.ReadAll(zr)
		if err != nil {
			return nil, fmt.Errorf("decompress %s: %w", p, err)
		}
		return data, nil
	case strings.HasSuffix(p, ".ko.xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".ko.zst"):
		tool = "zstd"
	default:
		return nil, fmt.Errorf("kernel module %s: unknown file type", p)
	}
	if _, err := exec.LookPath(tool); err != nil {
		return nil, fmt.Errorf("decompress kernel module %s: %s is not installed (apt-get install %s): %w",
			p, tool, map[string]string{"xz": "xz-utils", "zstd": "zstd"}[tool], ErrUnavailable)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, tool, "-dc", p)
	cmd.Stderr = &stderr
	data, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("decompress kernel module %s with %s: %w: %s", p, tool, err, strings.TrimSpace(stderr.String()))
	}
	return data, nil
}
