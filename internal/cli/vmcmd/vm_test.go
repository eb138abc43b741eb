package vmcmd

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
)

func TestParseDisk(t *testing.T) {
	good := []struct {
		spec string
		want api.DiskRequest
	}{
		{"10GiB", api.DiskRequest{Size: 10 << 30}},
		{"512M", api.DiskRequest{Size: 512 << 20}},
		{"20G,datastore=nfs1", api.DiskRequest{Size: 20 << 30, Datastore: "nfs1"}},
		{"1T,bus=scsi,datastore=ds2", api.DiskRequest{Size: 1 << 40, Datastore: "ds2", Bus: api.BusSCSI}},
		{" 2G , bus=sata", api.DiskRequest{Size: 2 << 30, Bus: api.BusSATA}},
	}
	for _, c := range good {
		got, err := parseDisk(c.spec)
		if err != nil {
			t.Errorf("parseDisk(%q): %v", c.spec, err)
		} else if got != c.want {
			t.Errorf("parseDisk(%q) = %+v, want %+v", c.spec, got, c.want)
		}
	}
	bad := []struct{ spec, wantErr string }{
		{"", "start with the size"},
		{"abc", `size "abc"`},
		{"-1G", "negative"},
		{"1EiB", "must be between"},
		{"10G,bus=ide", `bus must be one of virtio, scsi, sata, got "ide"`},
		{"10G,foo=1", `unknown key "foo"`},
		{"10G,bus=scsi,bus=sata", "bus given twice"},
		{"10G,datastore", "is not key=value"},
		{"10G,datastore=", "is not key=value"},
		{"datastore=x", "start with the size"},
	}
	for _, c := range bad {
		_, err := parseDisk(c.spec)
		if err == nil {
			t.Errorf("parseDisk(%q): no error", c.spec)
			continue
		}
		if !strings.HasPrefix(err.Error(), "--disk") || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("parseDisk(%q) error %q: want it to start with --disk and contain %q", c.spec, err, c.wantErr)
		}
	}
}

func TestParseNIC(t *testing.T) {
	good := []struct {
		spec string
		want api.NICRequest
	}{
		{"vm-network", api.NICRequest{PortGroup: "vm-network"}},
		{"dmz,model=e1000", api.NICRequest{PortGroup: "dmz", Model: "e1000"}},
		{"dmz,mac=52:54:00:12:34:56,model=virtio", api.NICRequest{PortGroup: "dmz", MAC: "52:54:00:12:34:56", Model: "virtio"}},
	}
	for _, c := range good {
		got, err := parseNIC("--nic", c.spec)
		if err != nil {
			t.Errorf("parseNIC(%q): %v", c.spec, err)
		} else if got != c.want {
			t.Errorf("parseNIC(%q) = %+v, want %+v", c.spec, got, c.want)
		}
	}
	bad := []struct{ spec, wantErr string }{
		{"", "start with the port group"},
		{"mac=52:54:00:12:34:56", "start with the port group"},
		{"pg,mac=zz", "not a MAC address"},
		{"pg,mac=02:00:5e:10:00:00:00:01", "not a MAC address"}, // EUI-64 is no Ethernet MAC
		{"pg,speed=10", `unknown key "speed"`},
		{"pg,model=a,model=b", "model given twice"},
	}
	for _, c := range bad {
		_, err := parseNIC("--nic", c.spec)
		if err == nil {
			t.Errorf("parseNIC(%q): no error", c.spec)
			continue
		}
		if !strings.HasPrefix(err.Error(), "--nic") || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("parseNIC(%q) error %q: want it to start with --nic and contain %q", c.spec, err, c.wantErr)
		}
	}
}

func TestVMCreateRequestSizesAndCPUs(t *testing.T) {
	bad := []struct {
		f       vmCreateFlags
		wantErr string
	}{
		{vmCreateFlags{cpus: 0, memory: "1GiB"}, "--cpus"},
		{vmCreateFlags{cpus: api.MaxVMCPUs + 1, memory: "1GiB"}, "--cpus"},
		{vmCreateFlags{cpus: 1, memory: "-1"}, "--memory"},
		{vmCreateFlags{cpus: 1, memory: "abc"}, "--memory"},
		{vmCreateFlags{cpus: 1, memory: "17TiB"}, "--memory"},
		{vmCreateFlags{cpus: 1, memory: "1GiB", disks: []string{"1EiB"}}, "--disk"},
		{vmCreateFlags{cpus: 1, memory: "1GiB", nics: []string{"a"}, noNIC: true}, "--no-nic"},
		{vmCreateFlags{cpus: 1, memory: "1GiB", disks: []string{"0"}}, "image's size"},
		{vmCreateFlags{cpus: 1, memory: "1GiB", image: "test", disks: []string{"1G", "0"}}, "first disk"},
		{vmCreateFlags{cpus: 1, memory: "1GiB", linked: true}, "--linked needs --image"},
	}
	for _, c := range bad {
		c.f.meta = &cmdutil.MetaFlags{}
		if _, err := c.f.request("vm1"); err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("request(%+v) error = %v, want one naming %s", c.f, err, c.wantErr)
		}
	}
	f := vmCreateFlags{meta: &cmdutil.MetaFlags{}, cpus: 1, memory: "1GiB", image: "/x.qcow2", disks: []string{"0,datastore=d2"}}
	if req, err := f.request("vm1"); err != nil || req.Disks[0].Size != 0 || req.Disks[0].Datastore != "d2" || req.Image != "/x.qcow2" {
		t.Errorf("--image with --disk 0: %+v %v", req, err)
	}
	f = vmCreateFlags{meta: &cmdutil.MetaFlags{Labels: []string{"tier=web"}}, cpus: 2, memory: "512MiB",
		disks: []string{"10G", "1G,bus=scsi"}, host: "h1", start: true}
	req, err := f.request("vm1")
	if err != nil {
		t.Fatal(err)
	}
	if req.CPUs != 2 || req.Memory != 512<<20 || len(req.Disks) != 2 || req.Disks[1].Bus != api.BusSCSI ||
		req.Host != "h1" || !req.PowerOn || req.Labels["tier"] != "web" {
		t.Errorf("request = %+v", req)
	}
}

// The server tells "no NIC flags" (null: one NIC on the only port group)
// from --no-nic ([]: none) by the JSON, so check the JSON.
func TestVMCreateRequestNICsJSON(t *testing.T) {
	for _, c := range []struct {
		name string
		f    vmCreateFlags
		want string
	}{
		{"default", vmCreateFlags{}, `"nics":null`},
		{"no-nic", vmCreateFlags{noNIC: true}, `"nics":[]`},
		{"nic", vmCreateFlags{nics: []string{"dmz"}}, `"nics":[{"portGroup":"dmz"}]`},
	} {
		c.f.meta, c.f.cpus, c.f.memory = &cmdutil.MetaFlags{}, 1, "1GiB"
		req, err := c.f.request("vm1")
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b, _ := json.Marshal(req)
		if !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %s does not contain %s", c.name, b, c.want)
		}
	}
}

func TestStopTimeout(t *testing.T) {
	for _, c := range []struct {
		d           time.Duration
		force, set  bool
		want        int
		wantErrText string
	}{
		{d: api.DefaultStopTimeout, want: 60},
		{d: 1500 * time.Millisecond, set: true, want: 2}, // rounded up, never to 0
		{d: 5 * time.Minute, set: true, want: 300},
		{d: api.DefaultStopTimeout, force: true, want: 0},
		{d: 5 * time.Second, force: true, set: true, wantErrText: "--force"},
		{d: 0, set: true, wantErrText: "--timeout must be above 0"},
		{d: -time.Second, set: true, wantErrText: "--timeout must be above 0"},
	} {
		got, err := stopTimeout(c.d, c.force, c.set)
		switch {
		case c.wantErrText != "" && (err == nil || !strings.Contains(err.Error(), c.wantErrText)):
			t.Errorf("stopTimeout(%v, %v, %v) error = %v, want %q", c.d, c.force, c.set, err, c.wantErrText)
		case c.wantErrText == "" && (err != nil || got != c.want):
			t.Errorf("stopTimeout(%v, %v, %v) = %d, %v; want %d", c.d, c.force, c.set, got, err, c.want)
		}
	}
}

func TestVMPower(t *testing.T) {
	for _, c := range []struct {
		st   api.VMStatus
		want string
	}{
		{api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOn}, "on"},
		{api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerUnknown, LastKnownPowerState: api.PowerOn}, "unknown (was on)"},
		{api.VMStatus{Phase: api.PhaseCreating}, "creating"},
		{api.VMStatus{Phase: api.PhaseDeleting, PowerState: api.PowerOff}, "off, deleting"},
	} {
		if got := vmPower(&api.VM{Status: c.st}); got != c.want {
			t.Errorf("vmPower(%+v) = %q, want %q", c.st, got, c.want)
		}
	}
	// A template is no powered-off VM in vm ls: it never runs.
	tpl := &api.VM{Metadata: api.ObjectMeta{Name: "gold"}, Spec: api.VMSpec{Template: true}, Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOff}}
	var b strings.Builder
	if err := cmdutil.PrintList(&cmdutil.Globals{Stdout: &b, Output: cmdutil.OutputTable}, []*api.VM{tpl}, vmColumns(time.Now())); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "gold  template") {
		t.Errorf("a template in vm ls:\n%s", b.String())
	}
}

func TestVMListColumns(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	vms := []*api.VM{
		{Metadata: api.ObjectMeta{Name: "web1", Created: now.Add(-5 * time.Minute)},
			Spec: api.VMSpec{Host: api.Ref{ID: "h", Name: "host-1"}, CPUs: 2, MemoryBytes: 1 << 30,
				Disks: []api.VMDisk{{SizeBytes: 10 << 30}, {SizeBytes: 1 << 30}}},
			Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOn}},
		{Metadata: api.ObjectMeta{Name: "web2", Created: now.Add(-time.Minute)},
			Spec:   api.VMSpec{Host: api.Ref{ID: "h", Name: "host-1"}, Folder: api.Ref{ID: "f", Name: "/web/prod"}, CPUs: 1, MemoryBytes: 1 << 30},
			Status: api.VMStatus{Phase: api.PhaseReady, PowerState: api.PowerOff}},
	}
	var b strings.Builder
	table := &cmdutil.Globals{Stdout: &b, Output: cmdutil.OutputTable}
	if err := cmdutil.PrintList(table, vms, vmColumns(now)); err != nil {
		t.Fatal(err)
	}
	want := "NAME  POWER  HOST    FOLDER     CPUS  MEMORY  DISKS   AGE\n" +
		"web1  on     host-1  /          2     1 GiB   11 GiB  5m ago\n" +
		"web2  off    host-1  /web/prod  1     1 GiB   -       1m ago\n"
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	// A status message brings the MESSAGE column in.
	vms[0].Status.Message = "host host-1 is disconnected"
	b.Reset()
	_ = cmdutil.PrintList(table, vms, vmColumns(now))
	if !strings.Contains(b.String(), "MESSAGE") || !strings.Contains(b.String(), "host host-1 is disconnected") {
		t.Errorf("table without the message:\n%s", b.String())
	}
}

func TestMigrateSummary(t *testing.T) {
	h1, h2 := api.Ref{ID: "1", Name: "host-1"}, api.Ref{ID: "2", Name: "host-2"}
	ds := api.Ref{ID: "d", Name: "fast"}
	for _, c := range []struct {
		res       api.MigrateResult
		want, not string
	}{
		{api.MigrateResult{From: h1, To: h1, Live: true, TotalMs: 1500, Datastore: ds, Disks: []string{"disk0"}, DiskBytes: api.MustSize("3MiB")},
			"vm web1: moved disk0 to datastore fast, 3 MiB copied in 1.5s, live on host-1", "downtime"},
		{api.MigrateResult{From: h1, To: h1, Datastore: ds, Disks: []string{"disk0", "disk1"}},
			"vm web1: moved disk0, disk1 to datastore fast (powered off)", "passes"},
		{api.MigrateResult{From: h1, To: h2, Live: true, TotalMs: 2000, DowntimeMs: 40, Transferred: api.MustSize("64MiB"), Passes: 2},
			"vm web1 migrated live to host-2 in 2s, downtime 40 ms, 64 MiB of memory sent in 2 passes", "datastore"},
		{api.MigrateResult{From: h1, To: h2, Live: true, TotalMs: 2000, Transferred: api.MustSize("64MiB"), Passes: 1, Datastore: ds, Disks: []string{"disk0"}, DiskBytes: api.MustSize("1GiB")},
			"vm web1 migrated live to host-2 in 2s, downtime 0 ms, 64 MiB of memory sent in 1 pass; moved disk0 to datastore fast, 1 GiB copied", "powered off"},
		{api.MigrateResult{From: h1, To: h2}, "vm web1 moved to host-2 (powered off)", "datastore"},
	} {
		got := migrateSummary("web1", c.res)
		if got != c.want || strings.Contains(got, c.not) {
			t.Errorf("%+v:\n got %q\nwant %q", c.res, got, c.want)
		}
	}
}
