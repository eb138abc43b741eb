package netconf

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// TapName is the tap device of a VM's NIC number nic: "vt" and 8 hex
// digits of the VM ID's hash, then "n" and the number (at most 15
// characters, as Linux wants).
func TapName(vmID string, nic int) string {
	sum := sha256.Sum256([]byte(vmID))
	return fmt.Sprintf("vt%sn%d", hex.EncodeToString(sum[:4]), nic)
}
