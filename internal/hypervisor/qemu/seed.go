package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vdc-project/vdc/internal/hypervisor"
)

// SeedTool makes NoCloud seed ISOs (Debian's genisoimage, as cloud-localds
// uses).
var SeedTool = "genisoimage"

// writeSeed makes the VM's cloud-init seed: an ISO 9660 volume labelled
// "cidata" holding meta-data, user-data and vendor-data (with Joliet and
// Rock Ridge names, so that "user-data" reads as such). It is made
// again on every launch, on the host that runs the VM.
func writeSeed(ctx context.Context, cfg hypervisor.VMConfig, dst string) error {
	if cfg.Seed == nil {
		return nil
	}
	if _, err := exec.LookPath(SeedTool); err != nil {
		return fmt.Errorf("cloud-init seed: %s is not installed (apt-get install genisoimage)", SeedTool)
	}
	dir, err := os.MkdirTemp(filepath.Dir(dst), ".seed-")
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.RemoveAll(dir)
	files := []string{"meta-data", "user-data"}
	contents := map[string]string{"meta-data": cfg.Seed.MetaData, "user-data": cfg.Seed.UserData}
	if cfg.Seed.VendorData != "" {
		files = append(files, "vendor-data")
		contents["vendor-data"] = cfg.Seed.VendorData
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(contents[f]), 0o644); err != nil {
			return fmt.Errorf("cloud-init seed: %w", err)
		}
	}
	tmp := dst + ".tmp"
	args := append([]string{"-quiet", "-output", tmp, "-volid", "cidata", "-joliet", "-rock"}, files...)
	cmd := exec.CommandContext(ctx, SeedTool, args...)
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cloud-init seed: %s: %s", SeedTool, strings.TrimSpace(errb.String()))
	}
	return os.Rename(tmp, dst)
}
