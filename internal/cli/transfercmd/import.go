package transfercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
	"github.com/vdc-project/vdc/internal/cli/cmdutil"
	"github.com/vdc-project/vdc/internal/disk"
	"github.com/vdc-project/vdc/internal/ovf"
)

type importFlags struct {
	req      api.ImportRequest
	networks []string
	props    []string
	labels   []string
	memory   string
}

func NewImportCmd(g *cmdutil.Globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Import VMs from OVF packages (OVA, OVF) and foreign disks (VMDK, VHD, VHDX, VDI, qcow2, raw)",
	}
	cmd.AddCommand(newImportPackageCmd(g, api.ImportOVA), newImportPackageCmd(g, api.ImportOVF), newImportDiskCmd(g))
	return cmd
}

func isURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func newImportPackageCmd(g *cmdutil.Globals, format string) *cobra.Command {
	f := &importFlags{}
	what := map[string]string{api.ImportOVA: "FILE.ova|URL", api.ImportOVF: "FILE.ovf|URL"}[format]
	cmd := &cobra.Command{
		Use: format + " " + what,
		Short: map[string]string{api.ImportOVA: "Import the VMs of an OVA (one tar file), from this machine or a URL",
			api.ImportOVF: "Import the VMs of an OVF descriptor with its files beside it, from this machine or a URL"}[format],
		Long: `Import an OVF package (DMTF DSP0243, OVF 0.9, 1.x and 2.0, as VMware,
VirtualBox, Xen/Citrix, oVirt and others write it) as VMs. The package's
files go to a staging folder on the datastore, where the host checks them
(tar safety, sizes, the manifest's SHA-1/SHA-256 digests and the
certificate's signature) and converts the disks to qcow2. Hardware vdc
cannot give a VM is dropped, with a warning. --dry-run shows the VMs that
would be made and every warning, and changes nothing.`,
		Example: `  vdc import ova appliance.ova --dry-run
  vdc import ova appliance.ova --name app1 --map-network "VM Network=vm-network" --prop hostname=app1 --accept-eula --start
  vdc import ovf exported/web.ovf --datastore nfs1 --deployment large
  vdc import ova https://images.example.com/appliance.ova`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.req.Format = format
			return f.run(cmd.Context(), g, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.req.Name, "name", "", "name of the VM (default: the package's; for several VMs, a prefix)")
	fl.StringVar(&f.req.Host, "host", "", "host to put the VMs on (default: placement picks)")
	fl.StringVar(&f.req.Cluster, "cluster", "", "cluster (default: the only one)")
	fl.StringVar(&f.req.Datastore, "datastore", "", "datastore for the disks (default: the only shared one)")
	fl.StringArrayVar(&f.networks, "map-network", nil, "put the package's network SRC on port group PORTGROUP: SRC=PORTGROUP (repeatable)")
	fl.StringArrayVar(&f.props, "prop", nil, "set a product property: KEY=VALUE (repeatable); the guest reads them from its OVF environment CD-ROM")
	fl.StringVar(&f.req.Deployment, "deployment", "", "deployment option (configuration) of the package")
	fl.BoolVar(&f.req.AcceptEULA, "accept-eula", false, "accept the package's license agreements")
	fl.BoolVar(&f.req.SkipManifest, "skip-manifest", false, "import without checking the manifest and certificate (unsafe)")
	fl.BoolVar(&f.req.DryRun, "dry-run", false, "show the VMs that would be made, and every warning; change nothing")
	fl.BoolVar(&f.req.PowerOn, "start", false, "power the VMs on once imported")
	fl.StringArrayVar(&f.labels, "label", nil, "label the VMs: KEY=VALUE (repeatable)")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

func newImportDiskCmd(g *cmdutil.Globals) *cobra.Command {
	f := &importFlags{}
	cmd := &cobra.Command{
		Use:   "disk FILE|URL --vm NAME",
		Short: "Convert a foreign disk (VMDK, VHD, VHDX, VDI, qcow2, raw) into a new VM, or a new disk of a VM that is off",
		Long: `Convert a disk image into qcow2. The format comes from the file's content,
not its name: VMDK (monolithicSparse, monolithicFlat, streamOptimized,
twoGbMaxExtent: give the descriptor, its extents go with it), VHD (fixed
and dynamic), VHDX, VDI, qcow2 and raw. With --vm naming a VM that exists
(powered off) the disk is added to it; otherwise a VM of that name is made
from the disk (--cpus, --memory).`,
		Example: `  vdc import disk win2019.vhdx --vm win1 --cpus 2 --memory 4GiB --bus sata --start
  vdc import disk data.vmdk --vm db1
  vdc import disk https://images.example.com/disk.vdi --vm t2`,
		Args: cmdutil.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f.req.Format = api.ImportFormatDisk
			if f.req.VM == "" {
				return errors.New("import disk: --vm is required: the VM to add the disk to, or the name of a new VM")
			}
			if f.memory != "" {
				m, err := cmdutil.ParseSizeFlag("--memory", f.memory, api.MinVMMemory, api.MaxVMMemory)
				if err != nil {
					return err
				}
				f.req.Memory = m
			}
			return f.run(cmd.Context(), g, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.req.VM, "vm", "", "the VM to add the disk to (powered off), or the name of a new VM")
	fl.IntVar(&f.req.CPUs, "cpus", 0, "a new VM's CPUs (default 1)")
	fl.StringVar(&f.memory, "memory", "", "a new VM's memory (default 1GiB)")
	fl.StringVar(&f.req.Bus, "bus", "", "disk bus: virtio (default), scsi or sata (for guests without virtio drivers)")
	fl.StringVar(&f.req.Host, "host", "", "host for a new VM (default: placement picks)")
	fl.StringVar(&f.req.Datastore, "datastore", "", "datastore for the disk (default: the only shared one)")
	fl.BoolVar(&f.req.DryRun, "dry-run", false, "show what would be made; change nothing")
	fl.BoolVar(&f.req.PowerOn, "start", false, "power a new VM on once imported")
	cmdutil.AddAsync(cmd, g)
	return cmd
}

// parseKV reads KEY=VALUE flags.
func parseKV(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%s %q: give KEY=VALUE", flag, v)
		}
		out[k] = val
	}
	return out, nil
}

func (f *importFlags) run(ctx context.Context, g *cmdutil.Globals, src string) error {
	var err error
	if f.req.Networks, err = parseKV("--map-network", f.networks); err != nil {
		return err
	}
	if f.req.Properties, err = parseKV("--prop", f.props); err != nil {
		return err
	}
	if f.req.Labels, err = parseKV("--label", f.labels); err != nil {
		return err
	}
	if f.req.SkipManifest {
		fmt.Fprintln(g.Stderr, "WARNING: --skip-manifest: the package's manifest and certificate are NOT checked; a changed or damaged package will not be noticed")
	}
	c, err := g.Client()
	if err != nil {
		return err
	}
	what := "import " + filepath.Base(src)
	if isURL(src) {
		f.req.URL = src
		return f.submit(ctx, g, c, what)
	}
	files, local, missing, err := localPackage(f.req.Format, src, f.req.DryRun)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if f.req.DryRun {
		var warnings []string
		switch {
		case local != nil && len(missing) > 0:
			// Plan from the descriptor alone, as for a URL: the import
			// itself needs the files.
			f.req.Descriptor = string(local.Descriptor)
			for _, m := range missing {
				warnings = append(warnings, fmt.Sprintf("file %s of the package is missing (no %s): the import needs it", m, filepath.Join(filepath.Dir(src), filepath.FromSlash(m))))
			}
			warnings = append(warnings, "with files missing, the dry run read the descriptor only: the files, their sizes and the manifest are checked at import")
		case local != nil:
			f.req.Descriptor = string(local.Descriptor)
			if warnings, err = checkLocal(local, f.req); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		if f.req.Format == api.ImportFormatDisk {
			return f.dryRunDisk(ctx, g, c, files)
		}
		_, plan, err := c.Import(ctx, f.req)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		plan.Warnings = append(plan.Warnings, warnings...)
		return printPlan(g, plan)
	}
	up, err := c.CreateUpload(ctx, api.UploadRequest{Datastore: f.req.Datastore})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	f.req.Upload = up.ID
	if f.req.Format == api.ImportFormatDisk {
		f.req.File = files[0].name
	}
	for _, lf := range files {
		if err := uploadOne(ctx, g, c, up.ID, lf); err != nil {
			_ = c.DeleteUpload(context.WithoutCancel(ctx), up.ID)
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	if err := f.submit(ctx, g, c, what); err != nil {
		_ = c.DeleteUpload(context.WithoutCancel(ctx), up.ID) // gone already if the task ran
		return err
	}
	return nil
}

func (f *importFlags) submit(ctx context.Context, g *cmdutil.Globals, c *client.Client, what string) error {
	if f.req.DryRun {
		_, plan, err := c.Import(ctx, f.req)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return printPlan(g, plan)
	}
	ch := cmdutil.Change{What: what,
		Call: func(ctx context.Context, c *client.Client) (*api.Task, error) {
			t, _, err := c.Import(ctx, f.req)
			return t, err
		},
		Done: func(ctx context.Context, c *client.Client, t *api.Task) string {
			var res api.ImportResult
			if jsonUnmarshalTask(t, &res) != nil {
				return "imported"
			}
			return importDone(res)
		}}
	return g.Apply(ctx, ch)
}

// importDone says what an import made, then each warning.
func importDone(res api.ImportResult) string {
	var names []string
	for _, r := range res.VMs {
		names = append(names, r.Name)
	}
	out := fmt.Sprintf("imported vm %s", strings.Join(names, ", "))
	if res.Disk != "" && len(names) > 0 {
		out = fmt.Sprintf("imported the disk as %s of vm %s", res.Disk, names[0])
	}
	for _, w := range res.Warnings {
		out += "\n  warning: " + w
	}
	return out
}

// localFile is a file to upload: its name in the package, and where it is.
type localFile struct {
	name, path string
	size       int64
}

// localPackage lists the files of a package on this machine: an OVA, an
// OVF with its manifest, certificate and referenced files beside it, or a
// disk (with its extents for a VMDK descriptor). With read (a dry run) it
// reads the package as the host would, checking it all, and lists the
// files an OVF references that are not there instead of failing; otherwise
// the host does that as the files arrive, and reading them twice would
// only cost.
func localPackage(format, src string, read bool) ([]localFile, *ovf.Package, []string, error) {
	switch format {
	case api.ImportOVA:
		return localOVA(src, read)
	case api.ImportOVF:
		return localOVF(src, read)
	}
	return localDisk(src)
}

// statLocal describes the regular file p, named name in the package.
func statLocal(name, p string) (localFile, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return localFile{}, err
	}
	if !fi.Mode().IsRegular() {
		return localFile{}, fmt.Errorf("%s is not a regular file", p)
	}
	return localFile{name: name, path: p, size: fi.Size()}, nil
}

// localOVA lists an OVA, reading it with read.
func localOVA(src string, read bool) ([]localFile, *ovf.Package, []string, error) {
	lf, err := statLocal(filepath.Base(src), src)
	if err != nil {
		return nil, nil, nil, err
	}
	if !strings.HasSuffix(strings.ToLower(lf.name), ".ova") {
		lf.name += ".ova"
	}
	if !read {
		return []localFile{lf}, nil, nil, nil // the host reads it as it arrives
	}
	fh, err := os.Open(src)
	if err != nil {
		return nil, nil, nil, err
	}
	defer fh.Close()
	pkg, err := ovf.ReadOVA(fh)
	if err != nil {
		return nil, nil, nil, err
	}
	return []localFile{lf}, pkg, nil, nil
}

// localOVF lists an OVF descriptor and the files beside it, reading them
// into the package with read.
func localOVF(src string, read bool) ([]localFile, *ovf.Package, []string, error) {
	data, err := os.ReadFile(src)
	if err != nil {
		return nil, nil, nil, err
	}
	env, err := ovf.Parse(data)
	if err != nil {
		return nil, nil, nil, err
	}
	dir, base := filepath.Dir(src), filepath.Base(src)
	pkg := ovf.NewPackage()
	if err := pkg.AddBytes(base, data); err != nil {
		return nil, nil, nil, err
	}
	files := []localFile{{name: base, path: src, size: int64(len(data))}}
	stem := strings.TrimSuffix(base, filepath.Ext(base))
	for _, extra := range []string{stem + ".mf", stem + ".cert"} {
		if lf, err := statLocal(extra, filepath.Join(dir, extra)); err == nil {
			files = append(files, lf)
		}
	}
	refs, missing, err := ovfReferenced(env, dir, read)
	if err != nil {
		return nil, nil, nil, err
	}
	files = append(files, refs...)
	if !read {
		return files, pkg, missing, nil
	}
	if err := addLocalFiles(pkg, files[1:]); err != nil {
		return nil, nil, nil, err
	}
	return files, pkg, missing, nil
}

// ovfReferenced lists the files the descriptor in dir references (each
// chunk of a chunked one); with read, those not there are missing rather
// than an error.
func ovfReferenced(env *ovf.Envelope, dir string, read bool) (files []localFile, missing []string, err error) {
	for _, fr := range env.Files {
		if err := ovf.CheckHref(fr.Href); err != nil {
			return nil, nil, err
		}
		names := []string{path.Clean(fr.Href)}
		if fr.ChunkSize > 0 {
			names = ovfChunks(dir, fr.Href)
		}
		for _, n := range names {
			lf, err := statLocal(n, filepath.Join(dir, filepath.FromSlash(n)))
			switch {
			case read && errors.Is(err, fs.ErrNotExist):
				missing = append(missing, n) // a dry run plans without it
				continue
			case errors.Is(err, fs.ErrNotExist):
				return nil, nil, fmt.Errorf("file %s of the package is missing: there is no %s beside the descriptor", n, filepath.Join(dir, filepath.FromSlash(n)))
			case err != nil:
				return nil, nil, fmt.Errorf("file %s of the package: %w", fr.Href, err)
			}
			files = append(files, lf)
		}
	}
	return files, missing, nil
}

// ovfChunks names the chunks of the chunked file href found in dir, or
// only the first when there is none.
func ovfChunks(dir, href string) []string {
	var names []string
	for i := 0; ; i++ {
		n := ovf.ChunkName(path.Clean(href), i)
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(n))); err != nil {
			if i == 0 {
				names = append(names, n) // none: the first is missing
			}
			break
		}
		names = append(names, n)
	}
	return names
}

// addLocalFiles reads files into the package, checking them as it goes.
func addLocalFiles(pkg *ovf.Package, files []localFile) error {
	for _, lf := range files {
		fh, err := os.Open(lf.path)
		if err != nil {
			return err
		}
		err = pkg.Add(lf.name, 0, lf.size, fh)
		fh.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// localDisk lists a disk file and, for a VMDK descriptor, its extents.
func localDisk(src string) ([]localFile, *ovf.Package, []string, error) {
	lf, err := statLocal(filepath.Base(src), src)
	if err != nil {
		return nil, nil, nil, err
	}
	det, err := disk.DetectFile(src)
	if err != nil {
		return nil, nil, nil, err
	}
	files := []localFile{lf}
	for _, e := range det.Extents {
		ef, err := statLocal(e, filepath.Join(filepath.Dir(src), e))
		if err != nil {
			return nil, nil, nil, fmt.Errorf("extent %s: %w", e, err)
		}
		files = append(files, ef)
	}
	return files, nil, nil, nil
}

// checkLocal checks a package on this machine as the host would.
func checkLocal(pkg *ovf.Package, req api.ImportRequest) ([]string, error) {
	env, err := ovf.Parse(pkg.Descriptor)
	if err != nil {
		return nil, err
	}
	plan, err := env.Plan(ovf.Options{Deployment: req.Deployment, Properties: req.Properties})
	if err != nil {
		return nil, err
	}
	return pkg.Check(env, plan, req.SkipManifest)
}

func (f *importFlags) dryRunDisk(ctx context.Context, g *cmdutil.Globals, c *client.Client, files []localFile) error {
	det, err := disk.DetectFile(files[0].path)
	if err != nil {
		return err
	}
	mem := f.req.Memory
	if mem == 0 {
		mem = api.MustSize("1GiB") // the server's default
	}
	vm := api.ImportVM{Name: f.req.VM, CPUs: max(f.req.CPUs, 1), Memory: mem,
		Disks: []api.ImportDisk{{Bus: f.req.Bus, File: files[0].name, Format: det.String()}}}
	if have, err := c.GetVM(ctx, f.req.VM); err == nil {
		vm = api.ImportVM{Name: have.Metadata.Name, CPUs: have.Spec.CPUs, Memory: have.Spec.MemoryBytes, Existing: true,
			Disks: []api.ImportDisk{{Name: fmt.Sprintf("disk%d", len(have.Spec.Disks)), Bus: f.req.Bus, File: files[0].name, Format: det.String()}}}
	} else if !errors.Is(err, api.ErrNotFound) {
		return err
	}
	return printPlan(g, &api.ImportPlan{Format: api.ImportFormatDisk, VMs: []api.ImportVM{vm}})
}

func uploadOne(ctx context.Context, g *cmdutil.Globals, c *client.Client, id string, lf localFile) error {
	fh, err := os.Open(lf.path)
	if err != nil {
		return err
	}
	defer fh.Close()
	var body io.Reader = fh
	if fd, ok := g.Stderr.(*os.File); ok && term.IsTerminal(int(fd.Fd())) {
		bar := progressbar.DefaultBytes(lf.size, "uploading "+lf.name)
		r := progressbar.NewReader(fh, bar)
		body = &r
		defer bar.Finish()
	}
	if _, err := c.UploadFile(ctx, id, lf.name, body, lf.size); err != nil {
		return fmt.Errorf("upload %s: %w", lf.name, err)
	}
	return nil
}

func printPlan(g *cmdutil.Globals, p *api.ImportPlan) error {
	if g.JSONOutput() {
		return cmdutil.WriteJSON(g.Stdout, p)
	}
	w := g.Stdout
	if p.OVFVersion != "" {
		fmt.Fprintf(w, "Package: OVF %s, %d VM(s)\n", cmdutil.Safe(p.OVFVersion), len(p.VMs))
	}
	for _, vm := range p.VMs {
		if vm.Existing {
			fmt.Fprintf(w, "VM %s (exists, powered off): the disk is added to it", cmdutil.Safe(vm.Name))
		} else {
			fmt.Fprintf(w, "VM %s: %d CPU(s), %s memory", cmdutil.Safe(vm.Name), vm.CPUs, vm.Memory)
		}
		if vm.OS != "" {
			fmt.Fprintf(w, ", guest OS %s", cmdutil.Safe(vm.OS))
		}
		if vm.Datastore.Name != "" {
			fmt.Fprintf(w, ", on datastore %s", cmdutil.Safe(vm.Datastore.Name))
		}
		fmt.Fprintln(w)
		for i, d := range vm.Disks {
			size := d.Size.String()
			if d.Size == 0 {
				size = "the image's size"
			}
			from := "blank"
			if d.File != "" {
				from = "from " + d.File
				if d.Format != "" {
					from += " (" + d.Format + ")"
				}
			}
			fmt.Fprintf(w, "  %s: %s, %s bus, %s\n", cmdutil.Safe(orDefault(d.Name, fmt.Sprintf("disk%d", i))), size, cmdutil.Safe(orDefault(d.Bus, api.BusVirtio)), cmdutil.Safe(from))
		}
		for i, n := range vm.NICs {
			src := ""
			if n.Network != "" {
				src = fmt.Sprintf(" (the package's network %q)", n.Network)
			}
			fmt.Fprintf(w, "  nic%d: %s on port group %s%s\n", i, cmdutil.Safe(n.Model), cmdutil.Safe(n.PortGroup.Name), cmdutil.Safe(src))
		}
		if vm.PropertiesISO {
			fmt.Fprintln(w, "  cdrom: its OVF environment (ovf-env.xml with the properties)")
		}
	}
	if len(p.Options) > 0 {
		var ids []string
		for _, o := range p.Options {
			ids = append(ids, o.ID)
		}
		fmt.Fprintf(w, "Deployment: %s (options: %s)\n", cmdutil.Safe(p.Deployment), cmdutil.Safe(strings.Join(ids, ", ")))
	}
	if len(p.Properties) > 0 {
		fmt.Fprintln(w, "Properties (set with --prop KEY=VALUE):")
		props := append([]api.ImportProperty(nil), p.Properties...)
		sort.Slice(props, func(i, j int) bool { return props[i].Key < props[j].Key })
		for _, pr := range props {
			label := ""
			if pr.Label != "" {
				label = "  # " + pr.Label
			}
			fmt.Fprintf(w, "  %s = %q (%s)%s\n", cmdutil.Safe(pr.Key), pr.Value, cmdutil.Safe(pr.Type), cmdutil.Safe(label))
		}
	}
	for i, e := range p.EULAs {
		fmt.Fprintf(w, "License agreement %d (accept with --accept-eula):\n%s\n", i+1, indent(cmdutil.SafeText(cmdutil.Truncate(strings.TrimSpace(e), 2000)), "  "))
	}
	if len(p.Warnings) > 0 {
		fmt.Fprintln(w, "Warnings:")
		for _, s := range p.Warnings {
			fmt.Fprintln(w, "  - "+cmdutil.Safe(s))
		}
	}
	fmt.Fprintln(w, "Nothing was changed (dry run).")
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func indent(s, pre string) string {
	return pre + strings.ReplaceAll(s, "\n", "\n"+pre)
}
