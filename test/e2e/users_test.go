package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/client"
)

// vdcStdin runs the CLI with stdin and the client config at config.
func (cl *cluster) vdcStdin(config, stdin string, args ...string) (string, error) {
	cmd := exec.Command(vdcBin, args...)
	cmd.Env = append(os.Environ(), "VDC_CONFIG="+config)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// As an operator does it: a user, a group, a permission for the group,
// and the user's own login with the CLI, trusting the server by the CA's
// fingerprint; the user sees and does only what the permission gives.
func TestUserLogsInWithTheCLI(t *testing.T) {
	cl := newCluster(t)
	cl.inventoryN(1)
	cl.vdc("vm", "create", "web1", "--memory", "64MiB", "--host", "host-1")
	admin := filepath.Join(cl.dir, "server", "admin.json")
	if out, err := cl.vdcStdin(admin, "a long enough secret\n", "user", "create", "alice", "--password-stdin", "--full-name", "Alice A."); err != nil {
		t.Fatalf("user create: %v\n%s", err, out)
	}
	cl.vdc("group", "create", "ops", "--member", "alice")
	cl.vdc("permission", "add", "--object", "hosts:host-1", "--group", "ops", "--role", "VirtualMachineUser", "--propagate")
	if out := cl.vdc("permission", "ls"); !strings.Contains(out, "group:ops") || !strings.Contains(out, "VirtualMachineUser") {
		t.Fatalf("permission ls:\n%s", out)
	}

	cfg, err := client.LoadConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(cfg.CA))
	sum := sha256.Sum256(block.Bytes)
	fp := hex.EncodeToString(sum[:])
	mine := filepath.Join(t.TempDir(), "alice.json")
	if out, err := cl.vdcStdin(mine, "wrong password\n", "login", cfg.Server, "--user", "alice", "--password-stdin", "--ca-fingerprint", fp); err == nil ||
		!strings.Contains(out, "wrong user or password") {
		t.Fatalf("login with a wrong password: %v\n%s", err, out)
	}
	out, err := cl.vdcStdin(mine, "a long enough secret\n", "login", cfg.Server, "--user", "alice", "--password-stdin", "--ca-fingerprint", "00"+fp[2:])
	if err == nil || !strings.Contains(out, "refusing") {
		t.Fatalf("login to a server with another CA fingerprint: %v\n%s", err, out)
	}
	if out, err := cl.vdcStdin(mine, "a long enough secret\n", "login", cfg.Server, "--user", "alice", "--password-stdin", "--ca-fingerprint", fp); err != nil {
		t.Fatalf("login: %v\n%s", err, out)
	}
	if st, err := os.Stat(mine); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("alice's client config: %v, mode %v; want 0600", err, st.Mode())
	}
	if out, err := cl.vdcStdin(mine, "", "vm", "start", "web1"); err != nil {
		t.Fatalf("alice starts web1: %v\n%s", err, out)
	}
	if out, err := cl.vdcStdin(mine, "", "vm", "delete", "web1", "--force"); err == nil || !strings.Contains(out, "VirtualMachine.Inventory.Delete") {
		t.Fatalf("alice deletes web1: %v\n%s", err, out)
	}
	if out, err := cl.vdcStdin(mine, "", "session", "ls"); err != nil || !strings.Contains(out, "alice") {
		t.Fatalf("session ls: %v\n%s", err, out)
	}
	eventually(t, 10*time.Second, "vdc audit ls to show alice's refused delete", func() bool {
		out := cl.vdc("audit", "ls", "--user", "alice", "--result", "refused")
		return strings.Contains(out, "vms:web1") && strings.Contains(out, "DELETE /api/v1/vms/{name}")
	})
	cl.vdc("user", "disable", "alice")
	if out, err := cl.vdcStdin(mine, "", "vm", "ls"); err == nil || !strings.Contains(out, "disabled") {
		t.Fatalf("a disabled user's CLI: %v\n%s", err, out)
	}
}
