package ovf

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/vdc-project/vdc/internal/testenv"
)

// sharedTestdata is ../shared/testdata/ovf beside the repository (CI has a
// copy of shared/ beside its clone).
func sharedTestdata(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../../../shared/testdata/ovf")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "SOURCES.md")); err != nil {
		testenv.Skip(t, "the shared OVF test material is not at %s (it lives in ../shared/testdata/ovf beside the repository)", dir)
	}
	return dir
}

// readFolderPackage reads an OVF with the files beside it that exist, as
// `vdc import ovf` does.
func readFolderPackage(t *testing.T, path string, env *Envelope) *Package {
	p := NewPackage()
	dir := filepath.Dir(path)
	data, _ := os.ReadFile(path)
	must(t, p.AddBytes(filepath.Base(path), data))
	base := strings.TrimSuffix(filepath.Base(path), ".ovf")
	for _, extra := range []string{base + ".mf", base + ".cert"} {
		if b, err := os.ReadFile(filepath.Join(dir, extra)); err == nil {
			must(t, p.AddBytes(extra, b))
		}
	}
	for _, f := range env.Files {
		if CheckHref(f.Href) != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, f.Href)); err == nil {
			must(t, p.AddBytes(f.Href, b))
		}
	}
	return p
}

func carriesDisks(dir string) bool {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		switch filepath.Ext(e.Name()) {
		case ".vmdk", ".gz", ".raw", ".img", ".qcow2", ".vhd":
			return true
		}
	}
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// importDryRun does what `vdc import --dry-run` does with a file, short of
// the inventory: read, check the package, plan.
func importDryRun(t *testing.T, path string) (*Plan, error) {
	var pkg *Package
	if strings.HasSuffix(path, ".ova") {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if pkg, err = ReadOVA(f); err != nil {
			return nil, err
		}
	}
	var data []byte
	if pkg != nil {
		data = pkg.Descriptor
	} else {
		data, _ = os.ReadFile(path)
	}
	env, err := Parse(data)
	if err != nil {
		return nil, err
	}
	plan, err := env.Plan(Options{})
	if err != nil {
		return nil, err
	}
	if pkg == nil {
		// A descriptor alone: check the files that lie beside it, when
		// any do (the ovftool templates point at files elsewhere).
		if !carriesDisks(filepath.Dir(path)) {
			return plan, nil
		}
		pkg = readFolderPackage(t, path, env)
	}
	w, err := pkg.Check(env, plan, false)
	plan.Warnings = append(plan.Warnings, w...)
	return plan, err
}

// rejected lists the files of the shared test material that vdc refuses,
// with what the error must name. Most are broken on purpose (ovftool's
// Neg/ cases, ganeti's wrong_* and corrupted_*, glance's bad OVAs, the
// security-test-content); the others ask for what vdc cannot do (a delta
// disk, a required vService binding, an empty vApp). Every other file must
// import with a sensible VM.
var rejected = map[string]string{
	"ganeti/empty.ovf":                                                                      "has no ovf:id",
	"ganeti/no_disk_in_ref.ovf":                                                             "not in References",
	"ganeti/wrong_xml.ovf":                                                                  "not well-formed XML",
	"ganeti/no_ovf.ova":                                                                     "gzip-compressed",
	"ganeti/ova.ova":                                                                        "gzip-compressed",
	"ganeti/wrong_ova.ova":                                                                  "not a tar archive",
	"ganeti/corrupted_resources.ovf":                                                        "other_disk.vmdk (file1) is referenced by the descriptor but not in the package",
	"ganeti/wrong_manifest.ovf":                                                             "does not match the manifest",
	"glance/testserver-bad-ovf.ova":                                                         "not well-formed XML",
	"glance/testserver-no-ovf.ova":                                                          "holds no .ovf descriptor",
	"glance/testserver-not-tar.ova":                                                         "not a tar archive",
	"glance/testserver-no-disk.ova":                                                         "not in the package",
	"govmomi/empty.ovf":                                                                     "no VirtualSystem",
	"govmomi-ttylinux/ttylinux-pc_i486-16.1.ova":                                            "is 1048576 bytes in the package; the descriptor says 10595840",
	"govmomi-external/ImportOvf2014/complete_vs_11.ovf":                                     "vServiceDependencySection",
	"govmomi-external/ImportOvf2014/complete_vsc.ovf":                                       "vServiceDependencySection",
	"govmomi-external/ImportOvf2014/complete_vsc_11.ovf":                                    "vServiceDependencySection",
	"govmomi-external/ImportOvf2014/complete_vsc_orig.ovf":                                  "vServiceDependencySection",
	"govmomi-external/ImportOvf2014/invalid.ovf":                                            "has no ovf:id",
	"govmomi-external/ImportOvf2014/parentDisk.ovf":                                         "delta",
	"govmomi-external/ImportOvf2014/empty_vsc.ovf":                                          "holds no virtual system",
	"govmomi-external/ImportOvf2014/properties_filtering.ovf":                               "holds no virtual system",
	"govmomi-external/ImportOvf2014/scaleoutStartup.ovf":                                    "holds no virtual system",
	"govmomi-external/ImportOvf2014/scaleoutVApp.ovf":                                       "holds no virtual system",
	"govmomi-external/ImportOvf2014/unknownsections_updated.ovf":                            "holds no virtual system",
	"govmomi-external/ovf_negative_test/New folder/haoUnOS2VMs/haoUnOS2VMs.ovf":             "has no ovf:id",
	"govmomi-external/security-test-content/ovf/large-disk/haoUnOS2VMs.ovf":                 "populated",
	"govmomi-external/security-test-content/ovf/negative-out-of-bound-disk/haoUnOS2VMs.ovf": "not a byte count",
	"govmomi-external/security-test-content/ovf/negative-size-disk/haoUnOS2VMs.ovf":         "not a byte count",
	"govmomi-external/security-test-content/ovf/out-of-bounds-disk/haoUnOS2VMs.ovf":         "not a byte count",
	"govmomi-external/OVFToolTemplates/ovftoolresources/valid_vmdk_neg_size.ovf":            "not a byte count",
}

// rejectedPatterns cover ovftool's test matrix, where one case is repeated
// for OVF 0.9 and 1.0 (folders X and X_1_0).
var rejectedPatterns = map[string]string{
	"DiskSection*/Neg/dup_diskid.ovf":                                                "used twice",
	"DiskSection*/Neg/inside_content.ovf":                                            "not in the DiskSection",
	"DiskSection*/Neg/no_diskid.ovf":                                                 "no ovf:diskId",
	"DiskSection*/Neg/popsize_gt_capacity.ovf":                                       "more than its capacity",
	"Envelope*/Neg/content_withnovm.ovf":                                             "no VirtualSystem",
	"Envelope*/Neg/fileelements_samefile.ovf":                                        "referenced twice",
	"Envelope*/Neg/invalid_empty_env.ovf":                                            "no VirtualSystem",
	"Envelope*/Neg/invalid_env.ovf":                                                  "not <Envelope>",
	"Envelope*/Neg/invalid_namespace.ovf":                                            "",
	"Envelope*/Neg/invalid_neg_chunk.ovf":                                            "not a byte count",
	"Envelope*/Neg/invalid_no_file_in_ref.ovf":                                       "not in References",
	"Envelope*/Neg/invalid_no_ref.ovf":                                               "not in References",
	"Envelope*/Neg/invalid_no_vm.ovf":                                                "no VirtualSystem",
	"Envelope*/Neg/invalid_ref_dup_id.ovf":                                           "used twice",
	"Envelope*/Neg/invalid_ref_id.ovf":                                               "no ovf:id",
	"Envelope*/Neg/invalid_ref_no_href.ovf":                                          "no ovf:href",
	"Envelope*/Neg/invalid_version.ovf":                                              "",
	"Envelope*/Neg/no_content.ovf":                                                   "no VirtualSystem",
	"Envelope*/Neg/section_compatibility_neg.ovf":                                    "marked required",
	"Envelope*/Pos/valid_vmdk_neg_size.ovf":                                          "not a byte count",
	"ProductSection*/Neg/prop_dup_keys.ovf":                                          "defined twice",
	"ProductSection*/Neg/prop_invalid_type.ovf":                                      "nosuchtype",
	"ProductSection*/Neg/prop_no_key.ovf":                                            "no ovf:key",
	"ProductSection*/Neg/prop_no_type.ovf":                                           "no ovf:type",
	"VirtualHardware*/Neg/dup_instanceid.ovf":                                        "used twice",
	"VirtualHardware*/Neg/empty_item.ovf":                                            "no InstanceID",
	"VirtualHardware*/Neg/invalid_multiple_vh.ovf":                                   "no InstanceID",
	"VirtualHardware*/Neg/maxwith_nonormal.ovf":                                      "no VirtualQuantity",
	"VirtualHardware*/Neg/no_instanceid.ovf":                                         "no InstanceID",
	"VirtualHardware*/Neg/no_resourcetype.ovf":                                       "no ResourceType",
	"VirtualHardware*/Neg/no_vh.ovf":                                                 "no VirtualHardwareSection",
	"VirtualHardware*/Neg/twomax_rangemarker.ovf":                                    "used twice",
	"VirtualHardware*/Neg/twomin_rangemarker.ovf":                                    "used twice",
	"Envelope*/Neg/content_vmwithnoid.ovf":                                           "has no ovf:id",
	"VirtualAppliances/Pos/nvapp00[3-8].ovf":                                         "holds no virtual system",
	"ovftoolresources/nvapp00[3-8].ovf":                                              "holds no virtual system",
	"VirtualHardware_1_0/Neg/noninteger_range.ovf":                                   "not a whole number",
	"ImportOvf2014/tagBasedPlacementGroupSection/tagBasedPlacementGroup00[1345].ovf": "holds no virtual system",
	"ImportOvf2014/tagBasedPlacementSection/tagBasedPlacement00[145].ovf":            "holds no virtual system",
}

func expectation(rel string) (string, bool) {
	if want, ok := rejected[rel]; ok {
		return want, true
	}
	for pat, want := range rejectedPatterns {
		for _, prefix := range []string{"govmomi-external/OVFToolTemplates/OVF/xmltestfiles/", "govmomi-external/OVFToolTemplates/", "govmomi-external/"} {
			if ok, _ := filepath.Match(prefix+pat, rel); ok {
				return want, true
			}
		}
	}
	return "", false
}

// TestSharedTestdata walks every OVF and OVA other tools wrote: each must
// plan a sensible VM, or fail with an error that names the problem.
func TestSharedTestdata(t *testing.T) {
	root := sharedTestdata(t)
	var files []string
	must(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && (strings.HasSuffix(p, ".ovf") || strings.HasSuffix(p, ".ova")) {
			files = append(files, p)
		}
		return err
	}))
	sort.Strings(files)
	ok, refused := 0, 0
	for _, p := range files {
		rel, _ := filepath.Rel(root, p)
		plan, err := importDryRun(t, p)
		want, mustFail := expectation(rel)
		switch {
		case mustFail && err == nil:
			t.Errorf("%s is broken on purpose but was accepted: %d VMs, warnings %q", rel, len(plan.VMs), plan.Warnings)
		case mustFail:
			refused++
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not say %q", rel, err, want)
			}
		case err != nil:
			t.Errorf("%s: %v", rel, err)
		default:
			ok++
			for _, vm := range plan.VMs {
				if vm.Name == "" || vm.CPUs < 1 || vm.MemoryBytes < 1<<20 {
					t.Errorf("%s: not a sensible VM: %+v", rel, vm)
				}
				for _, d := range vm.Disks {
					if d.CapacityBytes < 0 || (d.CapacityBytes == 0 && d.File == nil) {
						t.Errorf("%s: disk without a size: %+v", rel, d)
					}
				}
			}
		}
	}
	t.Logf("%d files: %d import, %d are refused as expected", len(files), ok, refused)
	if ok < 300 || refused < 80 {
		t.Errorf("only %d files imported and %d refused: the test material is incomplete", ok, refused)
	}
}
