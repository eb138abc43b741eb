package transfer

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/state"
	"github.com/vdc-project/vdc/internal/ovf"
)

// importPlan is an import resolved against the inventory.
type importPlan struct {
	api api.ImportPlan
	ovf *ovf.Plan
	vms []plannedVM
	// attach is the VM a disk import adds a disk to, disk the disk's name.
	attach *api.VM
	disk   string
	pkg    *agent.StagedPackage
}

// plannedVM is one VM to make, and where each disk's data is.
type plannedVM struct {
	req     api.VMCreateRequest
	sources []diskSource // by disk index
	props   []ovf.PropertyValue
	ovfID   string
}

type diskSource struct {
	Files    []string `json:"files,omitempty"` // empty: a blank disk
	Gzip     bool     `json:"gzip,omitempty"`
	Capacity int64    `json:"capacity"`
}

// stagedPackage gets the package's descriptor: given inline (a dry run),
// uploaded, or fetched from the URL (only as far as the descriptor for a
// dry run).
func (s *Service) stagedPackage(ctx context.Context, p *importParams, dryRun bool) (*agent.StagedPackage, error) {
	req := p.Req
	if req.Descriptor != "" {
		pkg := ovf.NewPackage()
		if err := pkg.AddBytes("package.ovf", []byte(req.Descriptor)); err != nil {
			return nil, err
		}
		return &agent.StagedPackage{Package: pkg}, nil
	}
	ds, h, err := s.stagingHost(p.Staging)
	if err != nil {
		return nil, err
	}
	if req.Upload != "" {
		sp, err := s.hosts.StagingIndex(ctx, hosts.TargetOf(h), ds.Metadata.ID, p.Staging)
		if errors.Is(err, api.ErrNotFound) {
			return nil, api.Errorf(api.ErrNotFound, "upload %s holds no file (upload the package first)", p.Staging)
		}
		return sp, err
	}
	if !dryRun {
		return nil, fmt.Errorf("internal: the package at %s is fetched by the task", req.URL)
	}
	tmp := newStagingID(ds.Metadata.ID)
	defer func() { _ = s.hosts.StagingDelete(context.WithoutCancel(ctx), hosts.TargetOf(h), ds.Metadata.ID, tmp) }()
	if req.Format == api.ImportFormatDisk {
		return &agent.StagedPackage{Package: ovf.NewPackage()}, nil
	}
	return s.hosts.StagingFetch(ctx, hosts.TargetOf(h), ds.Metadata.ID, tmp, agent.FetchRequest{URL: req.URL, DescriptorOnly: true}, nil)
}

// planImport reads the package and maps it onto the inventory.
func (s *Service) planImport(ctx context.Context, p *importParams, dryRun bool) (*importPlan, error) {
	sp, err := s.stagedPackage(ctx, p, dryRun)
	if err != nil {
		return nil, err
	}
	return s.planFrom(p, sp, dryRun)
}

// planFrom plans an import of the staged package sp.
func (s *Service) planFrom(p *importParams, sp *agent.StagedPackage, dryRun bool) (*importPlan, error) {
	req := p.Req
	if req.Format == api.ImportFormatDisk {
		return s.planDisk(p, sp)
	}
	pkg := sp.Package
	if pkg.DescriptorName == "" {
		return nil, api.Errorf(api.ErrInvalid, "the package holds no .ovf descriptor")
	}
	env, err := ovf.Parse(pkg.Descriptor)
	if err != nil {
		return nil, invalid(err)
	}
	oplan, err := env.Plan(ovf.Options{Deployment: req.Deployment, Properties: req.Properties})
	if err != nil {
		return nil, invalid(err)
	}
	sanitizePlan(oplan)
	warnings := oplan.Warnings
	if dryRun && req.URL != "" {
		// Only the descriptor was fetched.
		warnings = append(warnings, "a dry run of a URL reads the descriptor only: the files, their sizes and the manifest are checked at import")
	} else if len(pkg.Files) > 1 || sp.OVA != "" {
		w, err := pkg.Check(env, oplan, req.SkipManifest)
		if err != nil {
			return nil, invalid(err)
		}
		warnings = append(warnings, w...)
	} else if !dryRun {
		return nil, api.Errorf(api.ErrInvalid, "the upload holds only the descriptor: upload the files it references too")
	}
	for k := range req.Networks {
		if !slices.Contains(oplan.Networks, k) {
			return nil, api.Errorf(api.ErrInvalid, "the package has no network %q to map (its networks: %s)", k, listOr(oplan.Networks))
		}
	}
	if len(oplan.EULAs) > 0 && !req.AcceptEULA && !dryRun {
		return nil, api.Errorf(api.ErrInvalid, "the package has a license agreement (%d): read it (vdc import ... --dry-run shows it) and accept it with --accept-eula", len(oplan.EULAs))
	}
	ip := &importPlan{ovf: oplan, pkg: sp, api: describePackage(req.Format, oplan)}
	if len(oplan.VMs) == 0 {
		return nil, api.Errorf(api.ErrInvalid, "the package holds no VM")
	}
	for _, vm := range oplan.VMs {
		pv, err := s.planVM(req, vm, len(oplan.VMs), oplan.Properties)
		if err != nil {
			return nil, err
		}
		if len(pv.props) > 0 && len(pv.req.Disks) == 0 {
			// The environment ISO lives in the VM's disk folder.
			pv.props = nil
			warnings = append(warnings, fmt.Sprintf("vm %s has no disk: its properties are not handed to it", pv.req.Name))
		}
		ip.vms = append(ip.vms, pv)
		ip.api.VMs = append(ip.api.VMs, s.describe(pv, vm))
	}
	ip.api.Warnings = sanitizeWarnings(warnings)
	return ip, nil
}

// describePackage is the API's plan of what a package offers: its
// deployment options, properties (passwords hidden) and license
// agreements.
func describePackage(format string, oplan *ovf.Plan) api.ImportPlan {
	out := api.ImportPlan{Format: format, OVFVersion: oplan.Version, Deployment: oplan.Deployment, EULAs: oplan.EULAs}
	for _, o := range oplan.Options {
		out.Options = append(out.Options, api.ImportOption{ID: o.ID, Label: o.Label, Description: o.Description, Default: o.Default})
	}
	for _, pv := range oplan.Properties {
		v := pv.Value
		if pv.Password && v != "" {
			v = "********"
		}
		out.Properties = append(out.Properties, api.ImportProperty{Key: pv.Key, Label: pv.Label, Description: pv.Description,
			Type: pv.Type, Value: v, Password: pv.Password, UserConfigurable: pv.UserConfigurable})
	}
	return out
}

func invalid(err error) error {
	if errors.Is(err, ovf.ErrInvalid) {
		return api.Errorf(api.ErrInvalid, "%s", err.Error())
	}
	return err
}

func listOr(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

var badNameChars = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// vmName makes a valid VM name from a package's.
func vmName(s string) string {
	n := strings.Trim(badNameChars.ReplaceAllString(s, "-"), "-_.")
	if len(n) > api.MaxNameLength {
		n = strings.Trim(n[:api.MaxNameLength], "-_.")
	}
	if n == "" {
		n = "imported"
	}
	return n
}

// planVM plans one VM of a package (one of count) as a create request.
func (s *Service) planVM(req api.ImportRequest, vm ovf.VMPlan, count int, props []ovf.PropertyValue) (plannedVM, error) {
	name := vmName(vm.Name)
	switch {
	case count == 1 && req.Name != "":
		name = req.Name
	case req.Name != "":
		name = vmName(req.Name + "-" + vm.Name)
	}
	desc := api.TruncateText(strings.TrimSpace(vm.Annotation), api.MaxDescription) // sanitized by sanitizePlan
	cr := api.VMCreateRequest{Name: name, Cluster: req.Cluster, Host: req.Host, CPUs: vm.CPUs, Memory: api.Size(vm.MemoryBytes),
		Description: desc, Labels: req.Labels, NICs: []api.NICRequest{}}
	pv := plannedVM{ovfID: vm.ID, props: props}
	for _, d := range vm.Disks {
		size := api.Size(d.CapacityBytes)
		if size < api.MinVMMemory {
			size = api.MinVMMemory // the image's size, measured at conversion
		}
		cr.Disks = append(cr.Disks, api.DiskRequest{Size: size, Datastore: req.Datastore, Bus: d.Bus})
		src := diskSource{Capacity: d.CapacityBytes}
		if d.File != nil {
			src.Gzip = d.File.Compression == "gzip"
			if d.File.ChunkSize > 0 {
				// The chunk names are filled in from the package.
				src.Files = []string{path.Clean(d.File.Href) + "#chunks"}
			} else {
				src.Files = []string{path.Clean(d.File.Href)}
			}
		}
		pv.sources = append(pv.sources, src)
	}
	nics, err := s.planNICs(req, vm, name)
	if err != nil {
		return pv, err
	}
	cr.NICs = append(cr.NICs, nics...)
	if err := s.vms.ValidateCreate(&cr); err != nil {
		return pv, fmt.Errorf("vm %s: %w", name, err)
	}
	pv.req = cr
	return pv, nil
}

// planNICs maps the network adapters of VM name onto port groups: the one
// the request maps its network to, or one of the same name, or the only
// one.
func (s *Service) planNICs(req api.ImportRequest, vm ovf.VMPlan, name string) ([]api.NICRequest, error) {
	pgs, err := s.portGroupsFor(req)
	if err != nil {
		return nil, err
	}
	var out []api.NICRequest
	for i, n := range vm.NICs {
		pg := req.Networks[n.Network]
		if pg == "" && slices.Contains(pgs, n.Network) {
			pg = n.Network // a port group of the same name, as vSphere maps them
		}
		if pg == "" {
			if len(pgs) != 1 {
				return nil, api.Errorf(api.ErrInvalid, "vm %s: network adapter %d is on the package's network %q: say which port group it goes to with --map-network %q=PORTGROUP (port groups: %s)",
					name, i+1, n.Network, n.Network, listOr(pgs))
			}
			pg = pgs[0]
		}
		out = append(out, api.NICRequest{PortGroup: pg, Model: n.Model})
	}
	return out, nil
}

// portGroupsFor lists the port groups of the import's datacenter.
func (s *Service) portGroupsFor(req api.ImportRequest) ([]string, error) {
	dc := ""
	if req.Host != "" {
		o, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return nil, err
		}
		if cl, ok := state.Get[*api.Cluster](s.st, o.(*api.Host).Spec.Cluster.ID); ok {
			dc = cl.Spec.Datacenter.ID
		}
	} else {
		cl, err := s.inv.PickCluster(req.Cluster)
		if err != nil {
			return nil, err
		}
		dc = cl.Spec.Datacenter.ID
	}
	var out []string
	state.Each(s.st, func(pg *api.PortGroup) {
		if inventory.DatacenterOf(pg) == dc {
			out = append(out, pg.Metadata.Name)
		}
	})
	sort.Strings(out)
	for src, pg := range req.Networks {
		o, err := s.inv.Lookup(api.KindPortGroup, pg)
		if err != nil {
			return nil, fmt.Errorf("network %q: %w", src, err)
		}
		if inventory.DatacenterOf(o) != dc {
			return nil, api.Errorf(api.ErrInvalid, "network %q: port group %s is in another datacenter", src, pg)
		}
	}
	return out, nil
}

// describe turns a planned VM into the API's plan.
func (s *Service) describe(pv plannedVM, vm ovf.VMPlan) api.ImportVM {
	out := api.ImportVM{Name: pv.req.Name, CPUs: pv.req.CPUs, Memory: pv.req.Memory, OS: vm.OS, Description: pv.req.Description,
		PropertiesISO: len(pv.props) > 0}
	if vm.OSType != "" {
		out.OS = strings.TrimSpace(out.OS + " (" + vm.OSType + ")")
	}
	for i, d := range pv.req.Disks {
		id := api.ImportDisk{Size: d.Size, Bus: d.Bus}
		if pv.sources[i].Capacity == 0 {
			id.Size = 0
		}
		if i < len(vm.Disks) && vm.Disks[i].File != nil {
			id.File, id.Format = vm.Disks[i].File.Href, formatName(vm.Disks[i].Format)
		}
		out.Disks = append(out.Disks, id)
	}
	for i, n := range pv.req.NICs {
		in := api.ImportNIC{PortGroup: api.Ref{Name: n.PortGroup}, Model: n.Model}
		if i < len(vm.NICs) {
			in.Network = vm.NICs[i].Network
		}
		if pg, ok := state.Lookup[*api.PortGroup](s.st, n.PortGroup); ok {
			in.PortGroup = api.Ref{ID: pg.Metadata.ID, Name: pg.Metadata.Name}
		}
		out.NICs = append(out.NICs, in)
	}
	ds := ""
	if len(pv.req.Disks) > 0 {
		ds = pv.req.Disks[0].Datastore
	}
	if o, err := s.inv.Pick(api.KindDatastore, ds, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared || ds != "" }); err == nil {
		out.Datastore = api.Ref{ID: o.GetMeta().ID, Name: o.GetMeta().Name}
	}
	return out
}

func formatName(uri string) string {
	if i := strings.LastIndexByte(uri, '#'); i >= 0 {
		return "vmdk " + uri[i+1:]
	}
	return uri
}

// planDisk plans a disk import: a new disk for an existing VM that is off,
// or a new VM with the disk.
func (s *Service) planDisk(p *importParams, sp *agent.StagedPackage) (*importPlan, error) {
	req := p.Req
	file := req.File
	if file == "" && sp != nil && len(sp.Package.Order) > 0 {
		if len(sp.Package.Order) > 1 {
			return nil, api.Errorf(api.ErrInvalid, "the upload holds %d files (%s): say which is the disk", len(sp.Package.Order), strings.Join(sp.Package.Order, ", "))
		}
		file = sp.Package.Order[0]
	}
	if file == "" && req.URL != "" {
		u := strings.TrimRight(req.URL, "/")
		file = path.Base(u[strings.Index(u, "://")+3:])
	}
	src := diskSource{Files: []string{file}}
	ip := &importPlan{pkg: sp, api: api.ImportPlan{Format: api.ImportFormatDisk}}
	bus := req.Bus
	if bus == "" {
		bus = api.BusVirtio
	}
	if vm, ok := state.Lookup[*api.VM](s.st, req.VM); ok && req.VM != "" {
		if err := s.attachReady(vm, p.Disk); err != nil {
			return nil, err
		}
		ip.attach, ip.disk = vm, p.Disk
		if ip.disk == "" { // a dry run, or a task queued by an earlier version
			ip.disk = s.disks.NextDiskName(vm)
		}
		ip.vms = []plannedVM{{req: api.VMCreateRequest{Name: vm.Metadata.Name, Disks: []api.DiskRequest{{Datastore: req.Datastore, Bus: bus}}}, sources: []diskSource{src}}}
		// What it does is the plan, not a warning: the result says it again.
		ip.api.VMs = []api.ImportVM{{Name: vm.Metadata.Name, CPUs: vm.Spec.CPUs, Memory: vm.Spec.MemoryBytes, Existing: true,
			Disks: []api.ImportDisk{{Name: ip.disk, Bus: bus, File: file}}}}
		return ip, nil
	}
	name := req.Name
	if name == "" {
		name = req.VM
	}
	cpus, mem := max(req.CPUs, 1), req.Memory
	if mem == 0 {
		mem = api.Size(1 << 30)
	}
	cr := api.VMCreateRequest{Name: name, Cluster: req.Cluster, Host: req.Host, CPUs: cpus, Memory: mem, Labels: req.Labels,
		Disks: []api.DiskRequest{{Size: api.MinVMMemory, Datastore: req.Datastore, Bus: req.Bus}}}
	if err := s.vms.ValidateCreate(&cr); err != nil {
		return nil, err
	}
	ip.vms = []plannedVM{{req: cr, sources: []diskSource{src}}}
	ip.api.VMs = []api.ImportVM{{Name: name, CPUs: cpus, Memory: mem, Disks: []api.ImportDisk{{Bus: bus, File: file}}}}
	return ip, nil
}

// sanitizePlan cleans the text a foreign package brings (annotations,
// guest OS names, deployment option and property labels, license
// agreements) of control and invisible formatting characters, which
// api.ValidateText refuses in a request. A package made elsewhere is not
// refused for them: they become U+FFFD (line breaks in one-line text, a
// space), with a warning.
// Property keys and values are left as they are: the user names the keys
// and the guest gets the values.
func sanitizePlan(p *ovf.Plan) {
	var dirty []string
	clean := func(field string, s *string, multiline bool) {
		var n int
		*s, n = api.SanitizeText(*s, multiline)
		if n > 0 {
			dirty = append(dirty, fmt.Sprintf("%s (%d)", field, n))
		}
	}
	for i := range p.VMs {
		vm := &p.VMs[i]
		clean("annotation of vm "+vm.ID, &vm.Annotation, false)
		clean("guest OS of vm "+vm.ID, &vm.OS, false)
		clean("OS type of vm "+vm.ID, &vm.OSType, false)
	}
	for i := range p.Options {
		clean("label of deployment option "+p.Options[i].ID, &p.Options[i].Label, false)
		clean("description of deployment option "+p.Options[i].ID, &p.Options[i].Description, false)
	}
	for i := range p.Properties {
		clean("label of property "+p.Properties[i].Key, &p.Properties[i].Label, false)
		clean("description of property "+p.Properties[i].Key, &p.Properties[i].Description, true)
	}
	for i := range p.EULAs {
		clean(fmt.Sprintf("license agreement %d", i+1), &p.EULAs[i], true)
	}
	if len(dirty) > 0 {
		msg, _ := api.SanitizeText(strings.Join(dirty, ", "), false) // the IDs and keys are the package's too
		p.Warnings = append(p.Warnings, "the package's text held control or invisible formatting characters, replaced with U+FFFD: "+msg)
	}
}

// sanitizeWarnings cleans warnings that quote a package's names.
func sanitizeWarnings(ws []string) []string {
	for i := range ws {
		ws[i], _ = api.SanitizeText(ws[i], false)
	}
	return ws
}
