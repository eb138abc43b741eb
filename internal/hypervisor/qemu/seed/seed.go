// Package seed makes the NoCloud cloud-init seed ISO a VM boots with. It
// needs no VM state: the seed's files in, an ISO file out.
package seed

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

// Write makes a VM's cloud-init seed with tool (genisoimage): an ISO 9660
// volume labelled "cidata" holding meta-data, user-data and vendor-data
// (with Joliet and Rock Ridge names, so that "user-data" reads as such).
// The driver makes it again on every launch, on the host that runs the
// VM. A VM without a seed (nil) gets none.
func Write(ctx context.Context, tool string, seed *hypervisor.Seed, dst string) error {
	if seed == nil {
		return nil
	}
	if _, err := exec.LookPath(tool); err != nil {
		return fmt.Errorf("cloud-init seed: %s is not installed (apt-get install genisoimage)", tool)
	}
	dir, err := os.MkdirTemp(filepath.Dir(dst), ".seed-")
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.RemoveAll(dir)
	files := []string{"meta-data", "user-data"}
	contents := map[string]string{"meta-data": seed.MetaData, "user-data": seed.UserData}
	if seed.VendorData != "" {
		files = append(files, "vendor-data")
		contents["vendor-data"] = seed.VendorData
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(contents[f]), 0o644); err != nil {
			return fmt.Errorf("cloud-init seed: %w", err)
		}
	}
	tmp := dst + ".tmp"
	args := append([]string{"-quiet", "-output", tmp, "-volid", "cidata", "-joliet", "-rock"}, files...)
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("cloud-init seed: %s: %s", tool, strings.TrimSpace(errb.String()))
	}
	return os.Rename(tmp, dst)
}
