package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/agent"
	"github.com/vdc-project/vdc/internal/control/hosts"
	"github.com/vdc-project/vdc/internal/control/inventory"
	"github.com/vdc-project/vdc/internal/control/tasks"
	"github.com/vdc-project/vdc/internal/ovf"
	"github.com/vdc-project/vdc/internal/store"
)

// Imports and exports work in staging folders on a datastore
// (.vdc-staging/<id>), through a host that reaches it. An ID names its
// datastore (the first 36 characters), so the folder needs no record of
// its own: an upload is a folder the client fills, an export one it
// empties.
var stagingIDRE = regexp.MustCompile(`^([0-9a-f-]{36})-([0-9a-f]{16})$`)

func newStagingID(dsID string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return dsID + "-" + hex.EncodeToString(b)
}

// stagingHost resolves a staging ID to its datastore and a connected host
// that reaches it.
func (s *Server) stagingHost(id string) (*api.Datastore, *api.Host, error) {
	m := stagingIDRE.FindStringSubmatch(id)
	if m == nil {
		return nil, nil, api.Errorf(api.ErrNotFound, "no upload or export %q", id)
	}
	o, ok := s.cache.Get(api.KindDatastore, m[1])
	if !ok {
		return nil, nil, api.Errorf(api.ErrNotFound, "no upload or export %q (its datastore is gone)", id)
	}
	h, err := s.hostReaching(m[1])
	if err != nil {
		return nil, nil, err
	}
	return o.(*api.Datastore), h, nil
}

// POST /api/v1/uploads
func (s *Server) createUpload(w http.ResponseWriter, r *http.Request) {
	var req api.UploadRequest
	if !decode(w, r, &req) {
		return
	}
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared || req.Datastore != "" })
	if err == nil {
		_, err = s.hostReaching(ds.GetMeta().ID)
	}
	if err != nil {
		fail(w, fmt.Errorf("upload: %w", err))
		return
	}
	reply(w, http.StatusCreated, api.Upload{ID: newStagingID(ds.GetMeta().ID), Datastore: api.Ref{ID: ds.GetMeta().ID, Name: ds.GetMeta().Name}})
}

// PUT /api/v1/uploads/{id}/files?name=N: the body is the file. It goes
// straight to a host that reaches the upload's datastore, which checks it
// as it comes (an OVA's tar entries, sizes, digests).
func (s *Server) uploadFile(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	name := r.URL.Query().Get("name")
	if name == "" || ovf.CheckHref(name) != nil || path.Clean(name) != name {
		fail(w, api.Errorf(api.ErrInvalid, "upload: bad file name %q (a relative path inside the package)", name))
		return
	}
	if r.ContentLength < 0 {
		fail(w, api.Errorf(api.ErrInvalid, "upload needs a Content-Length"))
		return
	}
	ds, h, err := s.stagingHost(r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	res, err := s.agents.StagingPut(ctx, hosts.TargetOf(h), ds.Metadata.ID, r.PathValue("id"), name, r.Body, r.ContentLength)
	if err != nil {
		fail(w, fmt.Errorf("upload %s: %w", name, err))
		return
	}
	reply(w, http.StatusOK, api.UploadedFile{Name: res.Name, Size: api.Size(res.Size), SHA256: res.SHA256})
}

// DELETE /api/v1/uploads/{id} and /api/v1/exports/{id}
func (s *Server) deleteStaging(w http.ResponseWriter, r *http.Request) {
	if err := s.cache.Sync(r.Context()); err != nil {
		fail(w, err)
		return
	}
	ds, h, err := s.stagingHost(r.PathValue("id"))
	if err == nil {
		err = s.agents.StagingDelete(r.Context(), hosts.TargetOf(h), ds.Metadata.ID, r.PathValue("id"))
	}
	if err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// importParams are kept in a vm.import task.
type importParams struct {
	Req api.ImportRequest `json:"req"`
	// The staging folder the package is in (an upload), or is fetched to.
	Staging   string `json:"staging"`
	Datastore string `json:"datastore"`
	// Disk is the name of the disk a disk import adds to a VM, claimed
	// with the task.
	Disk string `json:"disk,omitempty"`
}

func validateImport(req *api.ImportRequest) error {
	switch req.Format {
	case api.ImportOVA, api.ImportOVF, api.ImportFormatDisk:
	default:
		return api.Errorf(api.ErrInvalid, "import format must be ova, ovf or disk, got %q", req.Format)
	}
	sources := 0
	for _, v := range []string{req.Upload, req.URL} {
		if v != "" {
			sources++
		}
	}
	if sources > 1 || (sources == 0 && !(req.DryRun && req.Descriptor != "")) {
		return api.Errorf(api.ErrInvalid, "give one source: an upload, or a URL (or, for a dry run, the descriptor)")
	}
	if req.Descriptor != "" && req.Format == api.ImportFormatDisk {
		return api.Errorf(api.ErrInvalid, "a disk import has no descriptor")
	}
	if err := api.ValidateText("url", req.URL); err != nil {
		return err
	}
	if req.URL != "" {
		u, err := url.Parse(req.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return api.Errorf(api.ErrInvalid, "url must be an http or https URL, got %q", req.URL)
		}
	}
	if req.Upload != "" && !stagingIDRE.MatchString(req.Upload) {
		return api.Errorf(api.ErrNotFound, "no upload %q", req.Upload)
	}
	if req.Name != "" {
		if err := api.ValidateName("vm", req.Name); err != nil {
			return err
		}
	}
	if err := inventory.ValidateLabels(req.Labels); err != nil {
		return err
	}
	switch req.Bus {
	case "", api.BusVirtio, api.BusSCSI, api.BusSATA:
	default:
		return api.Errorf(api.ErrInvalid, "bus must be virtio, scsi or sata, got %q", req.Bus)
	}
	if req.Format == api.ImportFormatDisk {
		if req.VM == "" && req.Name == "" {
			return api.Errorf(api.ErrInvalid, "a disk import needs the VM to attach it to, or a name for a new VM")
		}
		if req.CPUs != 0 || req.Memory != 0 {
			if err := inventory.ValidateVMShape(max(req.CPUs, 1), max(req.Memory, api.Size(1<<30))); err != nil {
				return err
			}
		}
	} else if req.VM != "" || req.CPUs != 0 || req.Memory != 0 || req.File != "" {
		return api.Errorf(api.ErrInvalid, "vm, cpus, memory and file apply to disk imports only")
	}
	for k, v := range req.Properties {
		if len(k) > 256 || len(v) > 64<<10 {
			return api.Errorf(api.ErrInvalid, "property %q is too long", truncate(k, 40))
		}
		// A value may span lines (a certificate); a key is one word.
		if err := inventory.FirstErr(api.ValidateText("property key", k), api.ValidateMultilineText(fmt.Sprintf("property %q value", k), v)); err != nil {
			return err
		}
	}
	for src, pg := range req.Networks {
		if err := inventory.FirstErr(api.ValidateText("network", src), api.ValidateText(fmt.Sprintf("port group of network %q", src), pg)); err != nil {
			return err
		}
	}
	return api.ValidateText("deployment", req.Deployment)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// POST /api/v1/imports: a dry run answers with the plan; an import starts a
// vm.import task. A package that is already uploaded is checked here, so
// that a bad one is refused at once, and nothing is made.
func (s *Server) createImport(w http.ResponseWriter, r *http.Request) {
	var req api.ImportRequest
	if !decode(w, r, &req) {
		return
	}
	if err := validateImport(&req); err != nil {
		fail(w, err)
		return
	}
	ctx := r.Context()
	if err := s.cache.Sync(ctx); err != nil {
		fail(w, err)
		return
	}
	p := importParams{Req: req}
	if req.Upload != "" {
		ds, _, err := s.stagingHost(req.Upload)
		if err != nil {
			fail(w, err)
			return
		}
		p.Staging, p.Datastore = req.Upload, ds.Metadata.ID
	} else {
		ds, err := s.inv.Pick(api.KindDatastore, req.Datastore, func(o api.Object) bool { return o.(*api.Datastore).Spec.Shared || req.Datastore != "" })
		if err != nil {
			fail(w, fmt.Errorf("import: %w", err))
			return
		}
		p.Staging, p.Datastore = newStagingID(ds.GetMeta().ID), ds.GetMeta().ID
	}
	var planned *importPlan
	if req.DryRun || req.Upload != "" {
		plan, err := s.planImport(ctx, &p, req.DryRun)
		if err != nil {
			fail(w, fmt.Errorf("import: %w", err))
			return
		}
		if req.DryRun {
			reply(w, http.StatusOK, plan.api)
			return
		}
		if err := s.checkNames(plan, nil); err != nil {
			fail(w, err)
			return
		}
		planned = plan
	}
	p.Req.Descriptor = ""
	name := req.Name
	if name == "" {
		name = req.VM
	}
	if name == "" && planned != nil && len(planned.vms) > 0 {
		name = planned.vms[0].req.Name
	}
	placeholder := &api.VM{Metadata: api.ObjectMeta{ID: store.NewID(), Name: name}}
	// What the import makes later is claimed with its task, where it is
	// known now: the name of the disk it adds to a VM, or of the VMs it
	// makes (all of them from an upload; the one of a disk).
	var attach *api.VM
	if planned != nil {
		attach = planned.attach
	} else if o, ok := s.cache.Lookup(api.KindVM, req.VM); ok && req.Format == api.ImportFormatDisk && req.VM != "" {
		attach = o.(*api.VM)
	}
	var t *api.Task
	var err error
	if attach != nil {
		t, err = s.inv.SubmitOnVM(ctx, attach, func(vm *api.VM) (*api.Task, error) {
			if err := s.attachReady(vm, ""); err != nil {
				return nil, err
			}
			p.Disk = s.nextDiskName(vm)
			t := tasks.New(ctx, api.OpVMImport, placeholder, p)
			claimDiskName(t, vm, p.Disk)
			return t, nil
		})
	} else {
		t = tasks.New(ctx, api.OpVMImport, placeholder, p)
		var names []string
		if planned != nil {
			for _, pv := range planned.vms {
				names = append(names, pv.req.Name)
			}
		} else if req.Format == api.ImportFormatDisk {
			names = []string{name}
		}
		txn := s.store.Txn()
		for _, n := range slices.Compact(slices.Sorted(slices.Values(names))) {
			if err := s.inv.VMNameFree(n, nil); err != nil {
				fail(w, err)
				return
			}
			txn.ClaimName(api.KindVM, n, t.Metadata.ID)
			t.Claims = append(t.Claims, store.NameClaim(api.KindVM, n))
		}
		t, err = s.submitter.Submit(ctx, txn, t)
	}
	if err != nil {
		fail(w, err)
		return
	}
	replyTask(w, t)
}

// checkNames refuses an import whose VMs' names are taken; self is the
// import's task, which holds its claims on them.
func (s *Server) checkNames(plan *importPlan, self *api.Task) error {
	if plan.attach != nil {
		return nil
	}
	for _, vm := range plan.vms {
		if err := s.inv.VMNameFree(vm.req.Name, self); err != nil {
			return fmt.Errorf("%w; import under another name (--name)", err)
		}
	}
	return nil
}

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

// descriptorOf gets the package's descriptor: given inline (a dry run),
// uploaded, or fetched from the URL (only as far as the descriptor for a
// dry run).
func (s *Server) stagedPackage(ctx context.Context, p *importParams, dryRun bool) (*agent.StagedPackage, error) {
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
		sp, err := s.agents.StagingIndex(ctx, hosts.TargetOf(h), ds.Metadata.ID, p.Staging)
		if errors.Is(err, api.ErrNotFound) {
			return nil, api.Errorf(api.ErrNotFound, "upload %s holds no file (upload the package first)", p.Staging)
		}
		return sp, err
	}
	if !dryRun {
		return nil, fmt.Errorf("internal: the package at %s is fetched by the task", req.URL)
	}
	tmp := newStagingID(ds.Metadata.ID)
	defer func() { _ = s.agents.StagingDelete(context.WithoutCancel(ctx), hosts.TargetOf(h), ds.Metadata.ID, tmp) }()
	if req.Format == api.ImportFormatDisk {
		return &agent.StagedPackage{Package: ovf.NewPackage()}, nil
	}
	return s.agents.StagingFetch(ctx, hosts.TargetOf(h), ds.Metadata.ID, tmp, agent.FetchRequest{URL: req.URL, DescriptorOnly: true}, nil)
}

// planImport reads the package and maps it onto the inventory.
func (s *Server) planImport(ctx context.Context, p *importParams, dryRun bool) (*importPlan, error) {
	sp, err := s.stagedPackage(ctx, p, dryRun)
	if err != nil {
		return nil, err
	}
	return s.planFrom(p, sp, dryRun)
}

func (s *Server) planFrom(p *importParams, sp *agent.StagedPackage, dryRun bool) (*importPlan, error) {
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
		if !slicesContains(oplan.Networks, k) {
			return nil, api.Errorf(api.ErrInvalid, "the package has no network %q to map (its networks: %s)", k, listOr(oplan.Networks))
		}
	}
	if len(oplan.EULAs) > 0 && !req.AcceptEULA && !dryRun {
		return nil, api.Errorf(api.ErrInvalid, "the package has a license agreement (%d): read it (vdc import ... --dry-run shows it) and accept it with --accept-eula", len(oplan.EULAs))
	}
	ip := &importPlan{ovf: oplan, pkg: sp}
	ip.api = api.ImportPlan{Format: req.Format, OVFVersion: oplan.Version, Deployment: oplan.Deployment, EULAs: oplan.EULAs}
	for _, o := range oplan.Options {
		ip.api.Options = append(ip.api.Options, api.ImportOption{ID: o.ID, Label: o.Label, Description: o.Description, Default: o.Default})
	}
	for _, pv := range oplan.Properties {
		v := pv.Value
		if pv.Password && v != "" {
			v = "********"
		}
		ip.api.Properties = append(ip.api.Properties, api.ImportProperty{Key: pv.Key, Label: pv.Label, Description: pv.Description,
			Type: pv.Type, Value: v, Password: pv.Password, UserConfigurable: pv.UserConfigurable})
	}
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

func invalid(err error) error {
	if errors.Is(err, ovf.ErrInvalid) {
		return api.Errorf(api.ErrInvalid, "%s", err.Error())
	}
	return err
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
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

func (s *Server) planVM(req api.ImportRequest, vm ovf.VMPlan, count int, props []ovf.PropertyValue) (plannedVM, error) {
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
	pgs, err := s.portGroupsFor(req)
	if err != nil {
		return pv, err
	}
	for i, n := range vm.NICs {
		pg := req.Networks[n.Network]
		if pg == "" && slicesContains(pgs, n.Network) {
			pg = n.Network // a port group of the same name, as vSphere maps them
		}
		if pg == "" {
			if len(pgs) != 1 {
				return pv, api.Errorf(api.ErrInvalid, "vm %s: network adapter %d is on the package's network %q: say which port group it goes to with --map-network %q=PORTGROUP (port groups: %s)",
					name, i+1, n.Network, n.Network, listOr(pgs))
			}
			pg = pgs[0]
		}
		cr.NICs = append(cr.NICs, api.NICRequest{PortGroup: pg, Model: n.Model})
	}
	if err := s.vms.ValidateCreate(&cr); err != nil {
		return pv, fmt.Errorf("vm %s: %w", name, err)
	}
	pv.req = cr
	return pv, nil
}

// portGroupsFor lists the port groups of the import's datacenter.
func (s *Server) portGroupsFor(req api.ImportRequest) ([]string, error) {
	dc := ""
	if req.Host != "" {
		o, err := s.inv.Lookup(api.KindHost, req.Host)
		if err != nil {
			return nil, err
		}
		if co, ok := s.cache.Get(api.KindCluster, o.(*api.Host).Spec.Cluster.ID); ok {
			dc = co.(*api.Cluster).Spec.Datacenter.ID
		}
	} else {
		cl, err := s.inv.PickCluster(req.Cluster)
		if err != nil {
			return nil, err
		}
		dc = cl.Spec.Datacenter.ID
	}
	var out []string
	s.cache.Each(api.KindPortGroup, func(o api.Object) {
		if inventory.DatacenterOf(o) == dc {
			out = append(out, o.GetMeta().Name)
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
func (s *Server) describe(pv plannedVM, vm ovf.VMPlan) api.ImportVM {
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
		if o, ok := s.cache.Lookup(api.KindPortGroup, n.PortGroup); ok {
			in.PortGroup = api.Ref{ID: o.GetMeta().ID, Name: o.GetMeta().Name}
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
