package inventory

import (
	"crypto/rand"
	"fmt"

	"github.com/vdc-project/vdc/api"
)

func ValidateVMShape(cpus int, mem api.Size) error {
	if cpus < 1 || cpus > api.MaxVMCPUs {
		return api.Errorf(api.ErrInvalid, "cpus must be between 1 and %d, got %d", api.MaxVMCPUs, cpus)
	}
	if mem < api.MinVMMemory || mem > api.MaxVMMemory {
		return api.Errorf(api.ErrInvalid, "memory must be between %s and %s, got %s", api.MinVMMemory, api.MaxVMMemory, mem)
	}
	if mem%(1<<20) != 0 {
		return api.Errorf(api.ErrInvalid, "memory must be a whole number of MiB, got %s (%d bytes)", mem, int64(mem))
	}
	return nil
}

// NewMAC picks a free address under 52:54:00, the prefix QEMU and libvirt
// use. Two concurrent creates could draw the same one: one in 16 million.
func (in *Inventory) NewMAC(used map[string]bool) string {
	for {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		mac := fmt.Sprintf("52:54:00:%02x:%02x:%02x", b[0], b[1], b[2])
		if !used[mac] && !in.Tally.MACInUse(mac) {
			return mac
		}
	}
}
