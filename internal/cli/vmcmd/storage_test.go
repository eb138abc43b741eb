package vmcmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

func TestCloudInitFlags(t *testing.T) {
	dir := t.TempDir()
	ud := filepath.Join(dir, "user-data.yaml")
	pub := filepath.Join(dir, "id.pub")
	os.WriteFile(ud, []byte("#cloud-config\n"), 0o644)
	os.WriteFile(pub, []byte("ssh-ed25519 AAAAkey me@host\n"), 0o644)
	f := &cloudInitFlags{userData: ud, sshKeys: []string{pub, "ssh-rsa AAAAB3 other"}}
	ci, err := f.build()
	if err != nil || ci.UserData != "#cloud-config\n" || len(ci.SSHKeys) != 2 || ci.SSHKeys[0] != "ssh-ed25519 AAAAkey me@host" {
		t.Fatalf("build: %+v %v", ci, err)
	}
	if ci, err := (&cloudInitFlags{}).build(); ci != nil || err != nil {
		t.Fatalf("no flags: %+v %v", ci, err)
	}
	if _, err := (&cloudInitFlags{sshKeys: []string{filepath.Join(dir, "missing.pub")}}).build(); err == nil || !strings.Contains(err.Error(), "not a public key") {
		t.Fatalf("a missing key file: %v", err)
	}
}

func TestParseDiskThick(t *testing.T) {
	d, err := parseDisk("20G,thick=true,bus=scsi")
	if err != nil || !d.Thick || d.Bus != "scsi" || d.Size != api.MustSize("20GiB") {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := parseDisk("20G,thick=yes"); err == nil {
		t.Fatal("thick=yes accepted")
	}
}

func TestSnapshotTree(t *testing.T) {
	now := time.Now()
	var b strings.Builder
	err := writeSnapshotTree(&b, "web1", []api.VMSnapshot{
		{ID: "1", Name: "a", PowerState: "on", Created: now.Add(-time.Hour), Memory: true},
		{ID: "2", Name: "b", ParentID: "1", PowerState: "off", Created: now.Add(-time.Minute)},
		{ID: "3", Name: "c", ParentID: "1", PowerState: "on", Created: now, Quiesced: true, Description: "before upgrade"},
	}, "3", now)
	want := `└─ a (memory, on, 1h ago)
   ├─ b (off, 1m ago)
   └─ c (quiesced, on, 0s ago) before upgrade
      └─ you are here
`
	if err != nil || b.String() != want {
		t.Fatalf("tree (%v):\n%s\nwant:\n%s", err, b.String(), want)
	}
}

// Two snapshots of one name (left by racing creates before names were
// claimed) are told apart by their IDs, which the commands take too.
func TestSnapshotTreeShowsIDsOfRepeatedNames(t *testing.T) {
	var b strings.Builder
	err := writeSnapshotTree(&b, "race-vm", []api.VMSnapshot{
		{ID: "id-1", Name: "snap-race", PowerState: "on"}, {ID: "id-2", Name: "snap-race", ParentID: "id-1", PowerState: "on"},
	}, "id-2", time.Now())
	if err != nil || !strings.Contains(b.String(), "└─ snap-race [id-1] (on") || !strings.Contains(b.String(), "   └─ snap-race [id-2] (on") {
		t.Fatalf("tree (%v):\n%s", err, b.String())
	}
}

// A tree with a cycle (as two racing creates of one name once made: the
// second snapshot under the first, both called snap-race) is an error
// naming the VM and the snapshot, not a walk without end.
func TestSnapshotTreeWithACycle(t *testing.T) {
	for name, snaps := range map[string][]api.VMSnapshot{
		"its own parent": {{ID: "1", Name: "snap-race", ParentID: "1", PowerState: "on"}},
		"two in a loop under a root": {{ID: "0", Name: "base", PowerState: "on"},
			{ID: "1", Name: "snap-race", ParentID: "2", PowerState: "on"}, {ID: "2", Name: "snap-race", ParentID: "1", PowerState: "on"}},
		"one ID twice": {{ID: "1", Name: "snap-race", PowerState: "on"}, {ID: "1", Name: "snap-race", ParentID: "1", PowerState: "on"}},
	} {
		var b strings.Builder
		err := writeSnapshotTree(&b, "race-vm", snaps, "1", time.Now())
		if err == nil || !strings.Contains(err.Error(), "vm race-vm") || !strings.Contains(err.Error(), "snap-race") {
			t.Errorf("%s: %v, printed:\n%s", name, err, b.String())
		}
	}
}
