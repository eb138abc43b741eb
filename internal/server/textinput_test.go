package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

// The probe of the security issue: a description that clears the screen
// and sets the window title of whoever lists it.
const escapeProbe = "ok\u001b[2J\u001b]0;pwned"

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Control characters and bidi overrides are refused in every free-text
// field, with a 400 naming the field and the position, and change nothing.
func TestControlCharactersAreRefused(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	tok := adminToken(t, d)
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "v1", CPUs: 1, Memory: api.MustSize("64MiB"), Disks: []api.DiskRequest{{Size: api.MustSize("64MiB")}}}))
	probe := jsonString(escapeProbe)
	bidi := jsonString("invoice\u202efdp.exe")
	vmBody := func(extra string) string { return `{"name":"bad","cpus":1,"memory":"64MiB",` + extra + `}` }
	cases := []struct {
		name, method, path, body, msg string
	}{
		{"vm description", "POST", "/api/v1/vms", vmBody(`"description":` + probe), "description has a control character (U+001B) at position 3"},
		{"vm label value", "POST", "/api/v1/vms", vmBody(`"labels":{"tier":` + probe + `}`), `label \"tier\" value has a control character (U+001B) at position 3`},
		{"vm label key", "POST", "/api/v1/vms", vmBody(`"labels":{` + probe + `:"x"}`), "label key"},
		{"bidi override", "POST", "/api/v1/vms", vmBody(`"description":` + bidi), "invisible formatting character (U+202E) at position 8"},
		{"line break", "POST", "/api/v1/vms", vmBody(`"description":"two\nlines"`), "(U+000A) at position 4"},
		{"C1 control", "POST", "/api/v1/vms", vmBody(`"description":"x\u009b2J"`), "(U+009B) at position 2"},
		{"ssh key", "POST", "/api/v1/vms", vmBody(`"cloudInit":{"sshKeys":["ssh-ed25519 AAAA x\u001b[2J"]}`), "SSH key 1 has a control character"},
		{"user-data", "POST", "/api/v1/vms", vmBody(`"cloudInit":{"userData":"#!/bin/sh\necho \u001b[2J"}`), "cloud-init user-data has a control character (U+001B) at position 16"},
		{"vm update", "PATCH", "/api/v1/vms/v1", `{"description":` + probe + `}`, "description has a control character"},
		{"vm relabel", "PATCH", "/api/v1/vms/v1", `{"labels":{"tier":` + probe + `}}`, `label \"tier\" value`},
		{"snapshot", "POST", "/api/v1/vms/v1/snapshots", `{"name":"s1","description":` + probe + `}`, "description has a control character"},
		{"clone", "POST", "/api/v1/vms/v1/clone", `{"name":"c1","description":` + probe + `}`, "description has a control character"},
		{"datacenter", "POST", "/api/v1/datacenters", `{"name":"dc2","description":` + probe + `}`, "description has"},
		{"datacenter update", "PATCH", "/api/v1/datacenters/dc1", `{"description":` + probe + `}`, "description has"},
		{"cluster", "PATCH", "/api/v1/clusters/cluster1", `{"labels":{"a":` + probe + `}}`, `label \"a\" value`},
		{"datastore", "PATCH", "/api/v1/datastores/datastore1", `{"description":` + probe + `}`, "description has"},
		{"port group", "PATCH", "/api/v1/portgroups/vm-network", `{"description":` + probe + `}`, "description has"},
		{"host", "PATCH", "/api/v1/hosts/host-1", `{"labels":{"rack":` + probe + `}}`, `label \"rack\" value`},
		{"image", "POST", "/api/v1/images", `{"name":"i1","type":"disk","description":` + probe + `}`, "description has"},
		{"image cmdline", "POST", "/api/v1/images", `{"name":"i1","type":"kernel","cmdline":` + probe + `}`, "kernel command line has"},
		{"image import", "POST", "/api/v1/images/import", `{"name":"i1","source":"https://example.com/x.qcow2","description":` + probe + `}`, "description has"},
		{"import property", "POST", "/api/v1/imports", `{"format":"ova","url":"https://example.com/x.ova","properties":{"k":` + probe + `}}`, `property \"k\" value has`},
	}
	for _, c := range cases {
		code, body := rawCall(t, d, c.method, c.path, c.body, tok)
		if code != http.StatusBadRequest || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %s %s: got %d %s; want 400 mentioning %q", c.name, c.method, c.path, code, body, c.msg)
		}
		if strings.Contains(body, "\u001b") {
			t.Errorf("%s: the error echoes the raw escape: %q", c.name, body)
		}
	}
	if n := vmCount(t, d); n != 1 {
		t.Fatalf("bad requests made VMs: %d", n)
	}
	vm := d.vm("v1")
	if vm.Spec.Description != "" || len(vm.Metadata.Labels) != 0 || len(vm.Spec.Snapshots) != 0 {
		t.Fatalf("bad requests changed v1: %+v %+v", vm.Metadata, vm.Spec)
	}
	dss, _ := client.List[*api.Datastore](ctx, d.c, api.KindDatastore, nil)
	if len(dss) != 1 || dss[0].Spec.Description != "" {
		t.Fatalf("a bad update changed the datastore: %+v", dss)
	}

	// Text in any script, and lines in user-data, are fine.
	d.run(d.c.CreateVM(ctx, api.VMCreateRequest{Name: "intl", CPUs: 1, Memory: api.MustSize("64MiB"), Description: "Grüße aus 東京 — ok 🚀",
		Labels:    map[string]string{"owner": "José Ñúñez"},
		CloudInit: &api.CloudInit{UserData: "#cloud-config\r\npackages:\n\t- nginx\n"}}))
	if got := d.vm("intl").Spec.Description; got != "Grüße aus 東京 — ok 🚀" {
		t.Fatalf("description stored as %q", got)
	}
}

// A foreign OVF package is not refused for control characters in its
// text: they become U+FFFD, with a warning, and the VM's description is
// plain text.
func TestImportSanitizesForeignText(t *testing.T) {
	d := newDC(t, 1)
	ctx := context.Background()
	desc, err := os.ReadFile("../ovf/testdata/export-1.0.ovf")
	if err != nil {
		t.Fatal(err)
	}
	// XML cannot hold ESC, but it can hold C1 controls (U+009B is CSI on
	// some terminals, U+0085 a line break), DEL and bidi overrides.
	evil := strings.Replace(string(desc), "a &lt;web&gt; server", "evil\u009b2J\u202eannotation\nline two &#x85;&#x7f; end", 1)
	if evil == string(desc) {
		t.Fatal("the test descriptor has no annotation to change")
	}
	_, plan, err := d.c.Import(ctx, api.ImportRequest{Format: "ovf", Descriptor: evil, DryRun: true})
	if err != nil {
		t.Fatalf("a package with control characters in its annotation is refused: %v", err)
	}
	if got, want := plan.VMs[0].Description, "evil\ufffd2J\ufffdannotation line two \ufffd\ufffd end"; got != want {
		t.Errorf("description %q, want %q", got, want)
	}
	if err := api.ValidateText("description", plan.VMs[0].Description); err != nil {
		t.Errorf("the sanitized description is still refused: %v", err)
	}
	warned := false
	for _, w := range plan.Warnings {
		warned = warned || strings.Contains(w, "replaced with U+FFFD: annotation of vm web1 (4)")
	}
	if !warned {
		t.Errorf("no warning about the replaced characters: %q", plan.Warnings)
	}
}
