package ovf

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
)

// Buses and NIC models of vdc VMs (as in package api).
const (
	BusVirtio = "virtio"
	BusSCSI   = "scsi"
	BusSATA   = "sata"
)

// Limits a plan must respect (as package api's).
const (
	maxCPUs    = 512
	maxMemory  = int64(16 << 40)
	maxDisk    = int64(64 << 40)
	maxDisks   = 32
	maxNICs    = 16
	defaultMem = int64(1 << 30)
)

// Options are the user's choices at import.
type Options struct {
	// Deployment is a DeploymentOptionSection configuration ID ("": the
	// package's default).
	Deployment string
	// Properties set ProductSection properties, by full key
	// (class.key.instance) or by bare key when that is unambiguous.
	Properties map[string]string
}

// Plan is what an import would make.
type Plan struct {
	Version    string             `json:"version"`
	Collection string             `json:"collection,omitempty"`
	VMs        []VMPlan           `json:"vms"`
	Deployment string             `json:"deployment,omitempty"`
	Options    []DeploymentOption `json:"deploymentOptions,omitempty"`
	// Networks are the package's logical networks the VMs use.
	Networks   []string        `json:"networks,omitempty"`
	Properties []PropertyValue `json:"properties,omitempty"`
	EULAs      []string        `json:"eulas,omitempty"`
	// Transport is how the package expects properties to reach the guest
	// ("iso": an OVF environment CD-ROM).
	Transport []string `json:"transport,omitempty"`
	Warnings  []string `json:"warnings,omitempty"`
}

// PropertyValue is a property with the value the guest will see.
type PropertyValue struct {
	Property
	Value string `json:"value"`
}

// VMPlan is one VM of an import.
type VMPlan struct {
	ID          string     `json:"id"` // the VirtualSystem's ovf:id
	Name        string     `json:"name"`
	CPUs        int        `json:"cpus"`
	MemoryBytes int64      `json:"memoryBytes"`
	Disks       []DiskPlan `json:"disks"`
	NICs        []NICPlan  `json:"nics"`
	OS          string     `json:"os,omitempty"`
	OSType      string     `json:"osType,omitempty"` // vmw:osType
	Firmware    string     `json:"firmware,omitempty"`
	Annotation  string     `json:"annotation,omitempty"`
	SystemType  string     `json:"systemType,omitempty"`
}

// DiskPlan is one disk and where its data comes from.
type DiskPlan struct {
	DiskID        string `json:"diskId,omitempty"`
	CapacityBytes int64  `json:"capacityBytes"`
	Bus           string `json:"bus"`
	// File is the package file holding the disk's data; nil for a blank
	// disk.
	File   *File  `json:"file,omitempty"`
	Format string `json:"format,omitempty"` // the descriptor's format URI
	// PopulatedBytes is what the descriptor says the disk holds.
	PopulatedBytes int64 `json:"populatedBytes,omitempty"`
}

// NICPlan is one network adapter.
type NICPlan struct {
	Network string `json:"network"`
	Model   string `json:"model"`
	// SourceModel is the adapter type in the descriptor.
	SourceModel string `json:"sourceModel,omitempty"`
}

// Plan maps the descriptor onto vdc hardware.
func (env *Envelope) Plan(opt Options) (*Plan, error) {
	p := &Plan{Version: env.Version, Collection: env.Collection, Options: env.Deployment}
	if err := env.chooseDeployment(p, opt.Deployment); err != nil {
		return nil, err
	}
	if err := env.planProperties(p, opt.Properties); err != nil {
		return nil, err
	}
	p.EULAs = append(p.EULAs, env.EULAs...)
	if err := env.sizeDisks(p); err != nil {
		return nil, err
	}
	nets := map[string]bool{}
	names := map[string]bool{}
	for _, vs := range env.Systems {
		vm, err := env.planVM(p, vs)
		if err != nil {
			return nil, err
		}
		if names[vm.Name] {
			vm.Name = vm.Name + "-" + vs.ID
		}
		names[vm.Name] = true
		for _, n := range vm.NICs {
			nets[n.Network] = true
		}
		p.EULAs = append(p.EULAs, vs.EULAs...)
		p.VMs = append(p.VMs, vm)
	}
	for n := range nets {
		p.Networks = append(p.Networks, n)
	}
	sort.Strings(p.Networks)
	p.EULAs = slices.DeleteFunc(p.EULAs, func(s string) bool { return strings.TrimSpace(s) == "" })
	return p, nil
}

func (env *Envelope) chooseDeployment(p *Plan, want string) error {
	if len(env.Deployment) == 0 {
		if want != "" {
			return invalidf("deployment option %q: the package has no DeploymentOptionSection", want)
		}
		return nil
	}
	var ids []string
	for _, d := range env.Deployment {
		ids = append(ids, d.ID)
		if want == "" && d.Default {
			p.Deployment = d.ID
		}
		if d.ID == want {
			p.Deployment = want
		}
	}
	if want != "" && p.Deployment != want {
		return invalidf("deployment option %q is not in the package (it has %s)", want, strings.Join(ids, ", "))
	}
	if p.Deployment == "" {
		p.Deployment = env.Deployment[0].ID // OVF: the first one is the default
	}
	return nil
}

func (env *Envelope) planProperties(p *Plan, set map[string]string) error {
	var all []Property
	for _, pr := range env.Products {
		all = append(all, pr.Properties...)
	}
	for _, vs := range env.Systems {
		for _, pr := range vs.Products {
			all = append(all, pr.Properties...)
		}
	}
	resolved := map[string]string{}
	for k, v := range set {
		full, err := resolveKey(all, k)
		if err != nil {
			return err
		}
		resolved[full] = v
	}
	for _, pr := range all {
		v, given := resolved[pr.Key]
		if !given {
			v = pr.Default
			if strings.HasPrefix(v, "${") {
				v = "" // a macro vdc does not expand
			}
		} else {
			if !pr.UserConfigurable {
				p.Warnings = append(p.Warnings, fmt.Sprintf("property %s is not marked user-configurable; set anyway", pr.Key))
			}
			if err := pr.Check(v); err != nil {
				return invalidf("property %s: %v", pr.Key, err)
			}
		}
		p.Properties = append(p.Properties, PropertyValue{Property: pr, Value: v})
	}
	return nil
}

func resolveKey(all []Property, k string) (string, error) {
	var match []string
	for _, pr := range all {
		if pr.Key == k {
			return k, nil
		}
		// class.key.instance: a bare key matches its middle part.
		if pr.Key == k || strings.HasSuffix(pr.Key, "."+k) || strings.HasPrefix(pr.Key, k+".") || strings.Contains(pr.Key, "."+k+".") {
			match = append(match, pr.Key)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		var keys []string
		for _, pr := range all {
			keys = append(keys, pr.Key)
		}
		if len(keys) == 0 {
			return "", invalidf("property %q: the package has no properties", k)
		}
		return "", invalidf("property %q is not in the package (it has %s)", k, strings.Join(firstN(keys, 20), ", "))
	}
	return "", invalidf("property %q is ambiguous: it could be %s", k, strings.Join(match, " or "))
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... (%d more)", len(s)-n))
	}
	return s
}

// inDeployment says whether an item belongs to the chosen configuration.
func inDeployment(it *Item, dep string) bool {
	return len(it.Configurations) == 0 || slices.Contains(it.Configurations, dep)
}

// Resource types of CIM_ResourceAllocationSettingData.
const (
	rtOther      = 1
	rtCPU        = 3
	rtMemory     = 4
	rtIDE        = 5
	rtSCSI       = 6
	rtFC         = 7
	rtISCSI      = 8
	rtIB         = 9
	rtEthernet   = 10
	rtOtherNet   = 11
	rtFloppy     = 14
	rtCD         = 15
	rtDVD        = 16
	rtDisk       = 17
	rtOtherStore = 20
	rtSerial     = 21
	rtParallel   = 22
	rtUSB        = 23
	rtGraphics   = 24
	rtSound      = 35
)

var rtNames = map[int]string{
	rtOther: "other device", 2: "computer system", rtFC: "Fibre Channel HBA", rtISCSI: "iSCSI HBA", rtIB: "InfiniBand HCA",
	12: "I/O slot", 13: "I/O device", rtFloppy: "floppy drive", rtCD: "CD drive", rtDVD: "DVD drive", 18: "tape drive",
	19: "storage extent", rtSerial: "serial port", rtParallel: "parallel port", rtUSB: "USB controller",
	rtGraphics: "graphics controller", 25: "IEEE 1394 controller", 26: "partitionable unit", 27: "base partitionable unit",
	28: "power", 29: "cooling", 30: "Ethernet switch port", 31: "logical disk", 32: "storage volume", 33: "Ethernet connection",
	rtSound: "sound card",
}

func rtName(t int) string {
	if n, ok := rtNames[t]; ok {
		return n
	}
	return fmt.Sprintf("resource type %d", t)
}

// chooseHardware picks the VirtualHardwareSection to use.
func chooseHardware(p *Plan, vs *VirtualSystem) *HardwareSection {
	hw := vs.Hardware[0]
	if len(vs.Hardware) > 1 {
		p.Warnings = append(p.Warnings, fmt.Sprintf("vm %s: the package gives %d hardware sections; the first (%s) is used",
			vs.ID, len(vs.Hardware), strings.Join(hw.SystemTypes, " ")))
	}
	return hw
}

// vmPlanner plans one VM of a package from its hardware items.
type vmPlanner struct {
	env              *Envelope
	p                *Plan
	vm               VMPlan
	controllers      map[string]*Item
	disks            map[string]*Disk
	files            map[string]*File
	dropped          []string
	memSeen, cpuSeen bool
}

func (pl *vmPlanner) warn(format string, args ...any) {
	pl.p.Warnings = append(pl.p.Warnings, fmt.Sprintf("vm %s: ", pl.vm.Name)+fmt.Sprintf(format, args...))
}

func (env *Envelope) planVM(p *Plan, vs *VirtualSystem) (VMPlan, error) {
	pl := &vmPlanner{env: env, p: p,
		vm: VMPlan{ID: vs.ID, Name: vs.Name, OS: vs.OS.Description, OSType: vs.OS.VMwareType, Annotation: vs.Annotation}}
	if pl.vm.Name == "" {
		pl.vm.Name = vs.ID
	}
	if pl.vm.OS == "" {
		pl.vm.OS = cimOSName(vs.OS.ID)
	}
	hw := chooseHardware(p, vs)
	pl.vm.SystemType = strings.Join(hw.SystemTypes, " ")
	for _, t := range hw.Transport {
		if !slices.Contains(p.Transport, t) {
			p.Transport = append(p.Transport, t)
		}
	}
	pl.firmware(hw, vs)
	items := dedupBounds(hw.Items, p.Deployment)
	pl.index(items)
	for i := range items {
		if err := pl.item(&items[i]); err != nil {
			return pl.vm, err
		}
	}
	err := pl.finish()
	return pl.vm, err
}

// firmware records the firmware the package asks for.
func (pl *vmPlanner) firmware(hw *HardwareSection, vs *VirtualSystem) {
	fw := strings.ToLower(hw.Extra["firmware"])
	if fw == "" {
		fw = vs.Firmware
	}
	if strings.HasPrefix(fw, "efi") {
		fw = "efi"
	}
	if fw != "" {
		pl.vm.Firmware = fw
		if fw == "efi" {
			pl.warn("the package asks for EFI firmware; vdc VMs boot with BIOS (SeaBIOS), so a guest that boots only with EFI will not start")
		}
	}
}

// index finds the controllers among the items, and the package's disks
// and files by ID.
func (pl *vmPlanner) index(items []Item) {
	pl.controllers = map[string]*Item{}
	for i := range items {
		if t := items[i].ResourceType; t == rtIDE || t == rtSCSI || t == rtOtherStore || t == rtFC || t == rtISCSI {
			pl.controllers[items[i].InstanceID] = &items[i]
		}
	}
	pl.disks = map[string]*Disk{}
	for i := range pl.env.Disks {
		pl.disks[pl.env.Disks[i].ID] = &pl.env.Disks[i]
	}
	pl.files = map[string]*File{}
	for i := range pl.env.Files {
		pl.files[pl.env.Files[i].ID] = &pl.env.Files[i]
	}
}

// item plans one hardware item.
func (pl *vmPlanner) item(it *Item) error {
	switch it.ResourceType {
	case rtCPU:
		return pl.cpu(it)
	case rtMemory:
		return pl.memory(it)
	case rtIDE, rtSCSI, rtOtherStore, rtFC, rtISCSI:
		if it.ResourceType == rtSCSI {
			if st := strings.ToLower(it.ResourceSubType); st != "" && st != "virtio" && st != "virtio-scsi" && it.Config["vdc:controller"] != "virtio-scsi" {
				pl.warn("SCSI controller %s (%s) becomes virtio-scsi; the guest needs a virtio-scsi driver", it.name(), it.ResourceSubType)
			}
		}
		if it.ResourceType == rtFC || it.ResourceType == rtISCSI {
			pl.warn("%s %s becomes a virtio-scsi controller", rtName(it.ResourceType), it.name())
		}
	case rtDisk:
		return pl.disk(it)
	case rtEthernet, rtOtherNet:
		pl.nic(it)
	case rtCD, rtDVD:
		what := rtName(it.ResourceType) + " " + it.name()
		for _, hr := range it.HostResource {
			if k, id := splitHostResource(hr); k == "file" {
				what += fmt.Sprintf(" (with file %s: attach it yourself with --cdrom)", id)
			}
		}
		pl.dropped = append(pl.dropped, what)
	default:
		pl.dropped = append(pl.dropped, rtName(it.ResourceType)+" "+it.name())
	}
	return nil
}

func (pl *vmPlanner) cpu(it *Item) error {
	if !it.HasQuantity {
		return invalidf("vm %s: the processor item has no VirtualQuantity", pl.vm.Name)
	}
	if it.VirtualQuantity < 1 || it.VirtualQuantity > maxCPUs {
		return invalidf("vm %s asks for %d virtual CPUs; vdc VMs have 1 to %d", pl.vm.Name, it.VirtualQuantity, maxCPUs)
	}
	pl.vm.CPUs, pl.cpuSeen = clampInt(it.VirtualQuantity), true
	return nil
}

func (pl *vmPlanner) memory(it *Item) error {
	units := it.AllocationUnits
	if units == "" {
		units = "byte * 2^20" // what VMware assumes
	}
	if !it.HasQuantity {
		return invalidf("vm %s: the memory item has no VirtualQuantity", pl.vm.Name)
	}
	n, err := scaledBytes(fmt.Sprint(it.VirtualQuantity), units, "byte")
	if err != nil {
		return invalidf("vm %s: memory %d %s: %v", pl.vm.Name, it.VirtualQuantity, units, err)
	}
	if n < 1<<20 || n > maxMemory {
		return invalidf("vm %s asks for %d bytes of memory; vdc VMs have 1 MiB to 16 TiB", pl.vm.Name, n)
	}
	pl.vm.MemoryBytes, pl.memSeen = (n+(1<<20)-1)&^((1<<20)-1), true
	return nil
}

func (pl *vmPlanner) disk(it *Item) error {
	d, err := planDisk(it, pl.controllers, pl.disks, pl.files)
	if err != nil {
		return fmt.Errorf("vm %s: %w", pl.vm.Name, err)
	}
	if d == nil {
		pl.dropped = append(pl.dropped, it.name()+" (disk drive with no disk)")
		return nil
	}
	dup := false
	for _, o := range pl.vm.Disks {
		if o.DiskID != "" && o.DiskID == d.DiskID {
			pl.warn("disk %s is attached twice; it is attached once", d.DiskID)
			dup = true
		}
	}
	if dup {
		return nil
	}
	for _, o := range pl.vm.Disks {
		if o.File != nil && d.File != nil && o.File.ID == d.File.ID {
			return invalidf("vm %s: disks %s and %s use the same file %s", pl.vm.Name, o.DiskID, d.DiskID, d.File.Href)
		}
	}
	if d.CapacityBytes == 0 && d.File != nil {
		pl.warn("disk %s gives no capacity; it takes the size of its image", d.DiskID)
	}
	pl.vm.Disks = append(pl.vm.Disks, *d)
	return nil
}

func (pl *vmPlanner) nic(it *Item) {
	n := NICPlan{SourceModel: it.ResourceSubType}
	if len(it.Connection) > 0 {
		n.Network = it.Connection[0]
	}
	n.Model = nicModel(it)
	if n.Model == "e1000" && n.SourceModel != "" && !strings.EqualFold(n.SourceModel, "e1000") {
		pl.warn("network adapter %s (%s) becomes an e1000", it.name(), n.SourceModel)
	}
	if n.Network != "" && !pl.env.hasNetwork(n.Network) {
		pl.warn("network adapter %s connects to %q, which is not in the NetworkSection", it.name(), n.Network)
	}
	if it.MAC != "" {
		if _, err := net.ParseMAC(it.MAC); err != nil {
			pl.warn("network adapter %s has a MAC address %q that is not one; a new one is made", it.name(), it.MAC)
		}
	}
	pl.vm.NICs = append(pl.vm.NICs, n)
}

// finish fills in what the items left out and checks vdc's limits.
func (pl *vmPlanner) finish() error {
	vm := &pl.vm
	if !pl.cpuSeen {
		vm.CPUs = 1
		pl.warn("no processor item; the VM gets 1 CPU")
	}
	if !pl.memSeen {
		vm.MemoryBytes = defaultMem
		pl.warn("no memory item; the VM gets 1 GiB")
	}
	if len(pl.dropped) > 0 {
		pl.warn("vdc gives the VM no %s", strings.Join(pl.dropped, ", "))
	}
	if len(vm.Disks) > maxDisks {
		return invalidf("vm %s has %d disks; vdc VMs have at most %d", vm.Name, len(vm.Disks), maxDisks)
	}
	if len(vm.NICs) > maxNICs {
		return invalidf("vm %s has %d network adapters; vdc VMs have at most %d", vm.Name, len(vm.NICs), maxNICs)
	}
	if len(vm.Disks) == 0 {
		// It may boot from the network; nothing else in a package boots it.
		pl.warn("the VM has no disk: it has nothing to boot from but the network")
	}
	return nil
}

// dedupBounds keeps the items of the chosen deployment and, of items that
// give min/normal/max bounds for one InstanceID, the normal one.
func dedupBounds(items []Item, dep string) []Item {
	var out []Item
	seen := map[string]int{}
	for _, it := range items {
		if !inDeployment(&it, dep) {
			continue
		}
		if i, ok := seen[it.InstanceID]; ok {
			// A configuration-specific item overrides a general one; a
			// normal bound overrides min and max.
			if len(it.Configurations) > 0 || it.Bound == "normal" || (it.Bound == "" && out[i].Bound != "") {
				out[i] = it
			}
			continue
		}
		seen[it.InstanceID] = len(out)
		out = append(out, it)
	}
	return out
}

func (env *Envelope) hasNetwork(name string) bool {
	for _, n := range env.Networks {
		if n.Name == name {
			return true
		}
	}
	return false
}

func planDisk(it *Item, controllers map[string]*Item, disks map[string]*Disk, files map[string]*File) (*DiskPlan, error) {
	d := &DiskPlan{Bus: BusSATA}
	if c := controllers[it.Parent]; c != nil {
		switch c.ResourceType {
		case rtSCSI, rtFC, rtISCSI:
			d.Bus = BusSCSI
			if st := strings.ToLower(c.ResourceSubType); st == "virtio" {
				d.Bus = BusVirtio
			}
		case rtOtherStore:
			if st := strings.ToLower(c.ResourceSubType); strings.Contains(st, "virtio") {
				d.Bus = BusVirtio
			}
		}
	}
	if b := it.Config["vdc:bus"]; b == BusVirtio || b == BusSCSI || b == BusSATA {
		d.Bus = b
	}
	for _, hr := range it.HostResource {
		kind, id := splitHostResource(hr)
		switch kind {
		case "disk":
			disk := disks[id]
			d.DiskID, d.CapacityBytes, d.Format, d.PopulatedBytes = disk.ID, disk.CapacityBytes, disk.Format, disk.PopulatedBytes
			if disk.FileRef != "" {
				d.File = files[disk.FileRef]
			}
		case "file":
			d.File = files[id]
		}
	}
	if d.DiskID == "" && d.File == nil {
		if !it.HasQuantity || it.VirtualQuantity == 0 {
			return nil, nil
		}
		n, err := scaledBytes(fmt.Sprint(it.VirtualQuantity), it.AllocationUnits, "byte")
		if err != nil {
			return nil, invalidf("disk item %s: size %d %s: %v", it.name(), it.VirtualQuantity, it.AllocationUnits, err)
		}
		d.CapacityBytes = n
	}
	if d.CapacityBytes > maxDisk {
		return nil, invalidf("disk %s declares a capacity of %d bytes (%s); vdc disks are at most 64 TiB", d.name(it), d.CapacityBytes, humanBytes(d.CapacityBytes))
	}
	if d.File != nil && d.DiskID != "" && d.Format != "" && !knownFormat(d.Format) {
		return nil, invalidf("disk %s has format %q, which vdc cannot read", d.name(it), d.Format)
	}
	return d, nil
}

func (d *DiskPlan) name(it *Item) string {
	if d.DiskID != "" {
		return d.DiskID
	}
	return it.name()
}

// knownFormat accepts the disk format URIs in use: VMware's VMDK (sparse,
// streamOptimized, flat...), and the other formats qemu-img reads (vdc
// checks the data itself anyway: the URI only has to not be nonsense).
func knownFormat(uri string) bool {
	u := strings.ToLower(uri)
	for _, f := range []string{"vmdk", "vhd", "vdi", "qcow", "raw", "iso", "img"} {
		if strings.Contains(u, f) {
			return true
		}
	}
	return false
}

func nicModel(it *Item) string {
	if m := it.Config["vdc:model"]; m == "virtio" || m == "e1000" || m == "rtl8139" {
		return m
	}
	switch st := strings.ToLower(it.ResourceSubType); {
	case strings.Contains(st, "virtio"):
		return "virtio"
	case strings.Contains(st, "8139"):
		return "rtl8139"
	}
	return "e1000"
}

func humanBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return fmt.Sprintf("%.4g %s", f, units[i])
}

// cimOSName names the common CIM operating system types.
func cimOSName(id int) string {
	switch id {
	case 0:
		return ""
	case 1:
		return "Other"
	case 36:
		return "Linux"
	case 67, 58, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 103, 105, 106, 107, 108, 109, 110, 111, 112, 113:
		return "Microsoft Windows"
	case 79 + 100:
		return "Other Linux"
	case 80 + 100:
		return "Linux 64-bit"
	case 93, 94:
		return "Ubuntu"
	case 95, 96:
		return "Debian"
	case 101, 102:
		return "Linux 2.6.x"
	case 42, 43:
		return "FreeBSD"
	}
	return fmt.Sprintf("CIM operating system %d", id)
}

// sizeDisks reads the capacity of disks sized by a property.
func (env *Envelope) sizeDisks(p *Plan) error {
	for i := range env.Disks {
		d := &env.Disks[i]
		if d.CapacityExpr == "" {
			continue
		}
		var val string
		found := false
		for _, pv := range p.Properties {
			if pv.Key == d.CapacityExpr || strings.HasSuffix(pv.Key, "."+d.CapacityExpr) || strings.Contains(pv.Key, "."+d.CapacityExpr+".") || strings.HasPrefix(pv.Key, d.CapacityExpr+".") {
				val, found = pv.Value, true
				break
			}
		}
		if !found {
			return invalidf("disk %q takes its capacity from property %q, which the package does not define", d.ID, d.CapacityExpr)
		}
		if val == "" {
			return invalidf("disk %q takes its capacity from property %q, which has no value: set it with --prop %s=SIZE", d.ID, d.CapacityExpr, d.CapacityExpr)
		}
		n, err := scaledBytes(val, d.CapacityUnits, "byte")
		if err != nil || n <= 0 {
			return invalidf("disk %q: capacity %q (from property %s) in %q is not a size", d.ID, val, d.CapacityExpr, d.CapacityUnits)
		}
		d.CapacityBytes = n
	}
	return nil
}
