package ovf

import (
	"fmt"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Namespaces of the OVF versions and their extensions.
const (
	NS09    = "http://www.vmware.com/schema/ovf/1/envelope"
	NS1     = "http://schemas.dmtf.org/ovf/envelope/1"
	NS2     = "http://schemas.dmtf.org/ovf/envelope/2"
	EnvNS   = "http://schemas.dmtf.org/ovf/environment/1"
	RASDNS  = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	VSSDNS  = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	SASDNS  = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_StorageAllocationSettingData"
	EPASDNS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_EthernetPortAllocationSettingData"
	CIMNS   = "http://schemas.dmtf.org/wbem/wscim/1/common"
	VMWNS   = "http://www.vmware.com/schema/ovf"
	VBoxNS  = "http://www.virtualbox.org/ovf/machine"
	VdcNS   = "https://github.com/vdc-project/vdc/ovf"
	xsiNS   = "http://www.w3.org/2001/XMLSchema-instance"
)

// Envelope is a parsed descriptor.
type Envelope struct {
	Version    string // "0.9", "1.0", "1.1", "2.0"...
	Files      []File
	Disks      []Disk
	Networks   []Network
	Deployment []DeploymentOption
	// Systems are the virtual systems, in document order, flattened out of
	// any VirtualSystemCollection.
	Systems []*VirtualSystem
	// Collection is the name (ovf:id) of the top VirtualSystemCollection,
	// if the package is one.
	Collection string
	// Envelope-level product sections and EULAs (OVF allows them on a
	// collection as well as on each system).
	Products []Product
	EULAs    []string
}

// File is a file the package references.
type File struct {
	ID   string
	Href string
	// Size is the file's size in bytes (0: not given); for a compressed
	// file it is the compressed size.
	Size        int64
	HasSize     bool
	Compression string // "", "identity" or "gzip"
	ChunkSize   int64  // > 0: stored as Href.000000000, Href.000000001...
}

// Disk is a virtual disk of the DiskSection.
type Disk struct {
	ID            string
	FileRef       string // "" for a blank disk made at import
	CapacityBytes int64
	// Populated is the bytes of data in it, when the descriptor says.
	PopulatedBytes int64
	Format         string // the format URI
	ParentRef      string
	// CapacityExpr names the property that gives the capacity
	// (ovf:capacity="${disksize}"), in CapacityUnits.
	CapacityExpr, CapacityUnits string
}

// Network is a logical network of the NetworkSection.
type Network struct {
	Name        string
	Description string
}

// DeploymentOption is a configuration of the DeploymentOptionSection.
type DeploymentOption struct {
	ID          string
	Label       string
	Description string
	Default     bool
}

// Property is a ProductSection property a user may set at import.
type Property struct {
	Key              string // with the section's class and instance: class.key.instance
	Type             string
	Qualifiers       string
	Default          string
	UserConfigurable bool
	Password         bool
	Label            string
	Description      string
	Category         string
	Values           []string // allowed values, when the type says so
}

// Product is a ProductSection.
type Product struct {
	Class, Instance                       string
	Product, Vendor, Version, FullVersion string
	Properties                            []Property
}

// VirtualSystem is one VM of the package.
type VirtualSystem struct {
	ID       string
	Name     string
	Info     string
	OS       OS
	Hardware []*HardwareSection
	Products []Product
	EULAs    []string
	// Annotation is the AnnotationSection's text.
	Annotation string
	// Firmware is what VirtualBox's vbox:Machine says ("bios", "efi").
	Firmware string
}

// OS is the OperatingSystemSection.
type OS struct {
	ID          int    // CIM OS type
	Description string // e.g. "Ubuntu"
	Version     string
	VMwareType  string // vmw:osType, e.g. "ubuntu64Guest"
}

// HardwareSection is a VirtualHardwareSection.
type HardwareSection struct {
	SystemTypes []string // vssd:VirtualSystemType, e.g. ["vmx-13"]
	Transport   []string // ovf:transport: "iso", "com.vmware.guestInfo"
	Items       []Item
	// Extra is vendor configuration: vmw:Config/ExtraConfig keys, the
	// firmware among them.
	Extra map[string]string
}

// Item is a RASD item (or an SASD/EPASD one in OVF 2.0).
type Item struct {
	InstanceID      string
	ResourceType    int
	ResourceSubType string
	ElementName     string
	Description     string
	VirtualQuantity int64
	HasQuantity     bool
	AllocationUnits string
	Parent          string
	Address         string
	AddressOnParent string
	HostResource    []string
	Connection      []string
	MAC             string
	Required        bool
	Bound           string // "min", "max", "normal" or ""
	Configurations  []string
	// Config holds vendor keys on the item (vmw:Config, vdc:Config).
	Config map[string]string
	Line   int
}

// Parse reads a descriptor. It checks what every import needs to be true
// (identifiers, references, sizes); mapping to hardware comes later.
func Parse(data []byte) (*Envelope, error) {
	root, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	if root.name != "Envelope" {
		return nil, invalidf("root element is <%s>, not <Envelope>: this is not an OVF descriptor", root.name)
	}
	env := &Envelope{}
	if env.Version, err = envelopeVersion(root); err != nil {
		return nil, err
	}
	if err := checkRequired(root); err != nil {
		return nil, err
	}
	if err := env.readReferences(root); err != nil {
		return nil, err
	}
	if err := env.readSections(root); err != nil {
		return nil, err
	}
	content, err := topContent(root)
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	if err := env.readContent(content, ids, 0); err != nil {
		return nil, err
	}
	if len(env.Systems) == 0 {
		return nil, invalidf("virtual system collection %q holds no virtual system", env.Collection)
	}
	return env, env.checkRefs()
}

// envelopeVersion is the OVF version of the envelope's namespace, checked
// against its ovf:version.
func envelopeVersion(root *node) (string, error) {
	var version string
	switch root.space {
	case NS09:
		version = "0.9"
	case NS1:
		version = "1.0"
		if v := root.attr("version"); strings.HasPrefix(v, "1.") {
			version = v
		}
	case NS2:
		version = "2.0"
		if v := root.attr("version"); strings.HasPrefix(v, "2.") {
			version = v
		}
	case "":
		return "", invalidf("<Envelope> has no namespace; OVF 1.x uses %s", NS1)
	default:
		return "", invalidf("<Envelope> has namespace %q, which is no OVF version (0.9, 1.x and 2.0 are read)", root.space)
	}
	if v, ok := root.lookup("version"); ok && v != "" {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return "", invalidf("ovf:version %q is not a version number", v)
		}
		if !strings.HasPrefix(v, version[:1]) && !(version == "0.9" && v == "0.9") {
			return "", invalidf("ovf:version %q does not match the envelope namespace (OVF %s)", v, version)
		}
	}
	return version, nil
}

// readSections reads the envelope's sections (the content is read after).
func (env *Envelope) readSections(root *node) error {
	for _, sec := range root.children {
		if err := checkRequired(sec); err != nil {
			return err
		}
		switch sec.kind() {
		case "References", "VirtualSystem", "VirtualSystemCollection":
		case "DiskSection":
			if err := env.readDisks(sec); err != nil {
				return err
			}
		case "NetworkSection":
			if err := env.readNetworks(sec); err != nil {
				return err
			}
		case "DeploymentOptionSection":
			if err := env.readDeployment(sec); err != nil {
				return err
			}
		case "ProductSection":
			p, err := readProduct(sec)
			if err != nil {
				return err
			}
			env.Products = append(env.Products, p)
		case "EulaSection":
			env.EULAs = append(env.EULAs, sec.childText("License"))
		}
	}
	return nil
}

func (env *Envelope) readNetworks(sec *node) error {
	for _, n := range sec.all("Network") {
		name := n.attr("name")
		if name == "" {
			return invalidf("a <Network> (line %d) has no ovf:name", n.line)
		}
		env.Networks = append(env.Networks, Network{Name: name, Description: n.childText("Description")})
	}
	return nil
}

func (env *Envelope) readDeployment(sec *node) error {
	for _, c := range sec.all("Configuration") {
		id := c.attr("id")
		if id == "" {
			return invalidf("a deployment option <Configuration> (line %d) has no ovf:id", c.line)
		}
		for _, d := range env.Deployment {
			if d.ID == id {
				return invalidf("deployment option %q is defined twice", id)
			}
		}
		env.Deployment = append(env.Deployment, DeploymentOption{ID: id, Label: c.childText("Label"),
			Description: c.childText("Description"), Default: c.attr("default") == "true"})
	}
	return nil
}

// topContent is the envelope's one VirtualSystem or
// VirtualSystemCollection.
func topContent(root *node) (*node, error) {
	content := root.first("VirtualSystem")
	if content == nil {
		content = root.first("VirtualSystemCollection")
	}
	if content == nil {
		return nil, invalidf("descriptor has no VirtualSystem or VirtualSystemCollection: there is no VM in it")
	}
	if len(root.all("VirtualSystem"))+len(root.all("VirtualSystemCollection")) > 1 {
		return nil, invalidf("descriptor has more than one top-level content element; OVF allows exactly one")
	}
	return content, nil
}

func (env *Envelope) readReferences(root *node) error {
	refs := root.all("References")
	if len(refs) > 1 {
		return invalidf("descriptor has %d <References> sections; OVF allows one", len(refs))
	}
	if len(refs) == 0 {
		return nil
	}
	seen := map[string]bool{}
	hrefs := map[string]bool{}
	for _, f := range refs[0].all("File") {
		file := File{ID: f.attr("id"), Href: f.attr("href"), Compression: f.attr("compression")}
		switch {
		case file.ID == "":
			return invalidf("a <File> (line %d) has no ovf:id", f.line)
		case file.Href == "":
			return invalidf("file %q has no ovf:href", file.ID)
		case seen[file.ID]:
			return invalidf("file id %q is used twice in References", file.ID)
		case hrefs[file.Href]:
			return invalidf("file %q is referenced twice in References", file.Href)
		}
		seen[file.ID], hrefs[file.Href] = true, true
		if v, ok := f.lookup("size"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return invalidf("file %q has ovf:size %q: not a byte count", file.Href, v)
			}
			file.Size, file.HasSize = n, true
		}
		if v, ok := f.lookup("chunkSize"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return invalidf("file %q has ovf:chunkSize %q: not a positive byte count", file.Href, v)
			}
			file.ChunkSize = n
		}
		switch file.Compression {
		case "", "identity", "gzip":
		default:
			return invalidf("file %q has ovf:compression %q; only gzip and identity are defined", file.Href, file.Compression)
		}
		env.Files = append(env.Files, file)
	}
	return nil
}

// CheckHref refuses references that leave the package: absolute paths,
// "..", and URLs (a package must carry its files).
func CheckHref(href string) error {
	if u, err := url.Parse(href); err == nil && u.Scheme != "" {
		if u.Scheme == "file" || len(u.Scheme) > 1 { // "C:" style drive letters are paths
			return invalidf("file %q is referenced by URL; vdc imports only the files the package carries", href)
		}
	}
	if strings.HasPrefix(href, "/") || strings.Contains(href, "\\") || strings.ContainsRune(href, 0) {
		return invalidf("file %q has an absolute or non-portable path; references must be relative to the descriptor", href)
	}
	clean := path.Clean(href)
	if clean == ".." || strings.HasPrefix(clean, "../") || clean == "." {
		return invalidf("file %q points outside the package", href)
	}
	return nil
}

func (env *Envelope) readDisks(sec *node) error {
	for _, d := range sec.all("Disk") {
		disk := Disk{ID: d.attr("diskId"), FileRef: d.attr("fileRef"), Format: d.attr("format"), ParentRef: d.attr("parentRef")}
		if disk.ID == "" {
			return invalidf("a <Disk> (line %d) has no ovf:diskId", d.line)
		}
		for _, o := range env.Disks {
			if o.ID == disk.ID {
				return invalidf("disk id %q is used twice in the DiskSection", disk.ID)
			}
		}
		capStr, ok := d.lookup("capacity")
		if strings.HasPrefix(capStr, "${") && strings.HasSuffix(capStr, "}") {
			// Sized by a property: Plan reads it once properties are set.
			disk.CapacityExpr, disk.CapacityUnits = capStr[2:len(capStr)-1], d.attr("capacityAllocationUnits")
			env.Disks = append(env.Disks, disk)
			continue
		}
		if !ok || capStr == "" {
			// VirtualBox 2.x wrote none: the image says how big it is.
			if disk.FileRef == "" {
				return invalidf("disk %q has no ovf:capacity and no file: its size is unknown", disk.ID)
			}
			env.Disks = append(env.Disks, disk)
			continue
		}
		units := d.attr("capacityAllocationUnits")
		n, err := scaledBytes(capStr, units, "byte")
		if err != nil {
			return invalidf("disk %q: capacity %q %s: %v", disk.ID, capStr, units, err)
		}
		if n <= 0 {
			return invalidf("disk %q has capacity %d bytes; a disk must hold something", disk.ID, n)
		}
		disk.CapacityBytes = n
		if v, ok := d.lookup("populatedSize"); ok {
			p, err := strconv.ParseInt(v, 10, 64)
			if err != nil || p < 0 {
				return invalidf("disk %q has ovf:populatedSize %q: not a byte count", disk.ID, v)
			}
			if p > n {
				return invalidf("disk %q says %d bytes are populated, more than its capacity of %d", disk.ID, p, n)
			}
			disk.PopulatedBytes = p
		}
		if disk.ParentRef != "" {
			return invalidf("disk %q is a delta of disk %q (ovf:parentRef); vdc imports only whole disks", disk.ID, disk.ParentRef)
		}
		env.Disks = append(env.Disks, disk)
	}
	return nil
}

func readProduct(sec *node) (Product, error) {
	p := Product{Class: sec.attr("class"), Instance: sec.attr("instance"), Product: sec.childText("Product"),
		Vendor: sec.childText("Vendor"), Version: sec.childText("Version"), FullVersion: sec.childText("FullVersion")}
	category := ""
	seen := map[string]bool{}
	for _, c := range sec.children {
		switch c.kind() {
		case "Category":
			category = strings.TrimSpace(c.text)
		case "Property":
			key := c.attr("key")
			if key == "" {
				return p, invalidf("a product property (line %d) has no ovf:key", c.line)
			}
			typ := normType(c.attr("type"))
			if typ == "" {
				return p, invalidf("product property %q has no ovf:type", key)
			}
			if !knownType(typ) {
				return p, invalidf("product property %q has type %q, which OVF does not define", key, typ)
			}
			full := fullKey(p.Class, key, p.Instance)
			if seen[full] {
				return p, invalidf("product property %q is defined twice", full)
			}
			seen[full] = true
			prop := Property{Key: full, Type: typ, Qualifiers: c.attr("qualifiers"), Default: c.attr("value"),
				UserConfigurable: c.attr("userConfigurable") == "true", Password: c.attr("password") == "true",
				Label: c.childText("Label"), Description: c.childText("Description"), Category: category}
			for _, v := range c.all("Value") {
				if v.attr("configuration") == "" {
					prop.Default = v.attr("value")
				}
			}
			prop.Values = allowedValues(prop.Qualifiers)
			if prop.Default != "" && !strings.HasPrefix(prop.Default, "${") {
				if err := prop.Check(prop.Default); err != nil {
					return p, invalidf("product property %q: default %v", full, err)
				}
			}
			p.Properties = append(p.Properties, prop)
		}
	}
	return p, nil
}

func fullKey(class, key, instance string) string {
	k := key
	if class != "" {
		k = class + "." + k
	}
	if instance != "" {
		k += "." + instance
	}
	return k
}

func (env *Envelope) readContent(n *node, ids map[string]bool, depth int) error {
	if depth > 8 {
		return invalidf("virtual system collections nest deeper than 8")
	}
	id := n.attr("id")
	if id == "" {
		return invalidf("a <%s> (line %d) has no ovf:id", n.kind(), n.line)
	}
	if ids[id] {
		return invalidf("content id %q is used twice", id)
	}
	ids[id] = true
	if err := checkRequired(n); err != nil {
		return err
	}
	if n.kind() == "VirtualSystemCollection" {
		if env.Collection == "" {
			env.Collection = id
		}
		for _, c := range n.children {
			switch c.kind() {
			case "VirtualSystem", "VirtualSystemCollection":
				if err := env.readContent(c, ids, depth+1); err != nil {
					return err
				}
			case "ProductSection":
				p, err := readProduct(c)
				if err != nil {
					return err
				}
				env.Products = append(env.Products, p)
			case "EulaSection":
				env.EULAs = append(env.EULAs, c.childText("License"))
			}
		}
		return nil
	}
	vs := &VirtualSystem{ID: id, Name: n.childText("Name"), Info: n.childText("Info")}
	for _, c := range n.children {
		if err := checkRequired(c); err != nil {
			return err
		}
		switch c.kind() {
		case "OperatingSystemSection":
			vs.OS = OS{Description: c.childText("Description"), Version: c.attr("version"), VMwareType: c.attrNS(VMWNS, "osType")}
			if v := c.attr("id"); v != "" {
				osID, err := strconv.Atoi(v)
				if err != nil {
					return invalidf("virtual system %q: operating system id %q is not a number", id, v)
				}
				vs.OS.ID = osID
			}
		case "VirtualHardwareSection":
			hw, err := readHardware(c, id)
			if err != nil {
				return err
			}
			vs.Hardware = append(vs.Hardware, hw)
		case "ProductSection":
			p, err := readProduct(c)
			if err != nil {
				return err
			}
			vs.Products = append(vs.Products, p)
		case "EulaSection":
			vs.EULAs = append(vs.EULAs, c.childText("License"))
		case "AnnotationSection":
			vs.Annotation = c.childText("Annotation")
		case "Machine":
			if c.space == VBoxNS {
				vs.Firmware = vboxFirmware(c)
			}
		}
	}
	if len(vs.Hardware) == 0 {
		return invalidf("virtual system %q has no VirtualHardwareSection: its hardware is unknown", id)
	}
	env.Systems = append(env.Systems, vs)
	return nil
}

func readHardware(sec *node, vsID string) (*HardwareSection, error) {
	hw := &HardwareSection{Extra: map[string]string{}}
	if t := sec.attr("transport"); t != "" {
		hw.Transport = strings.Fields(t)
	}
	instances := map[string]bool{}
	for _, c := range sec.children {
		switch c.name {
		case "System":
			for _, t := range strings.FieldsFunc(c.childText("VirtualSystemType"), func(r rune) bool { return r == ' ' || r == ',' }) {
				hw.SystemTypes = append(hw.SystemTypes, t)
			}
		case "Item", "StorageItem", "EthernetPortItem":
			it, err := readItem(c)
			if err != nil {
				return nil, fmt.Errorf("virtual system %q: %w", vsID, err)
			}
			key := it.InstanceID + "/" + strings.Join(it.Configurations, ",") + "/" + it.Bound
			if instances[key] {
				return nil, invalidf("virtual system %q: hardware item InstanceID %q is used twice", vsID, it.InstanceID)
			}
			instances[key] = true
			hw.Items = append(hw.Items, it)
		case "Config", "ExtraConfig":
			if k := c.attrNS(VMWNS, "key"); k != "" {
				hw.Extra[k] = c.attrNS(VMWNS, "value")
			}
		}
	}
	return hw, nil
}

func readItem(c *node) (Item, error) {
	it := Item{Required: c.required(), Bound: c.attr("bound"), Config: map[string]string{}, Line: c.line}
	if v := c.attr("configuration"); v != "" {
		it.Configurations = strings.Fields(v)
	}
	for _, f := range c.children {
		v := strings.TrimSpace(f.text)
		switch f.name {
		case "InstanceID", "InstanceId":
			it.InstanceID = v
		case "ResourceType":
			n, err := strconv.Atoi(v)
			if err != nil {
				return it, invalidf("hardware item on line %d has ResourceType %q, not a number", c.line, v)
			}
			it.ResourceType = n
		case "ResourceSubType":
			it.ResourceSubType = v
		case "ElementName", "Caption":
			if it.ElementName == "" || f.name == "ElementName" {
				it.ElementName = v
			}
		case "Description":
			it.Description = v
		case "VirtualQuantity":
			if v == "" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return it, invalidf("hardware item %q has VirtualQuantity %q, not a whole number", it.name(), v)
			}
			it.VirtualQuantity, it.HasQuantity = n, true
		case "AllocationUnits", "VirtualQuantityUnits":
			if it.AllocationUnits == "" || f.name == "AllocationUnits" {
				it.AllocationUnits = v
			}
		case "Parent":
			it.Parent = v
		case "Address":
			it.Address = v
		case "AddressOnParent":
			it.AddressOnParent = v
		case "HostResource":
			it.HostResource = append(it.HostResource, v)
		case "Connection":
			if v != "" {
				it.Connection = append(it.Connection, v)
			}
		case "Address ":
		case "Config":
			if k := f.attrNS(VMWNS, "key"); k != "" {
				it.Config["vmw:"+k] = f.attrNS(VMWNS, "value")
			}
			if k := f.attrNS(VdcNS, "key"); k != "" {
				it.Config["vdc:"+k] = f.attrNS(VdcNS, "value")
			}
		}
		if f.name == "Address" && it.ResourceType == 10 {
			it.MAC = v
		}
	}
	if it.InstanceID == "" {
		return it, invalidf("a hardware item on line %d has no InstanceID", c.line)
	}
	if it.ResourceType == 0 {
		return it, invalidf("hardware item %q (line %d) has no ResourceType", it.name(), c.line)
	}
	if it.ResourceType == 10 {
		it.MAC = it.Address
	}
	return it, nil
}

func (it *Item) name() string {
	if it.ElementName != "" {
		return it.ElementName
	}
	return it.InstanceID
}

// checkRefs checks that every reference points at something.
func (env *Envelope) checkRefs() error {
	files := map[string]bool{}
	for _, f := range env.Files {
		files[f.ID] = true
	}
	disks := map[string]bool{}
	for _, d := range env.Disks {
		if d.FileRef != "" && !files[d.FileRef] {
			return invalidf("disk %q refers to file %q, which is not in References", d.ID, d.FileRef)
		}
		disks[d.ID] = true
	}
	nets := map[string]bool{}
	for _, n := range env.Networks {
		nets[n.Name] = true
	}
	for _, vs := range env.Systems {
		for _, hw := range vs.Hardware {
			for _, it := range hw.Items {
				for _, hr := range it.HostResource {
					kind, id := splitHostResource(hr)
					switch {
					case kind == "disk" && !disks[id]:
						return invalidf("virtual system %q: item %q uses disk %q, which is not in the DiskSection", vs.ID, it.name(), id)
					case kind == "file" && !files[id]:
						return invalidf("virtual system %q: item %q uses file %q, which is not in References", vs.ID, it.name(), id)
					}
				}
			}
		}
	}
	return nil
}

// splitHostResource reads "ovf:/disk/vmdisk1" (or "/disk/vmdisk1",
// VirtualBox's form) as ("disk", "vmdisk1").
func splitHostResource(hr string) (kind, id string) {
	s := strings.TrimPrefix(strings.TrimPrefix(hr, "ovf:"), "/")
	kind, id, ok := strings.Cut(s, "/")
	if !ok {
		return "", hr
	}
	return kind, id
}

// knownSections are the sections and elements vdc reads or may ignore
// safely; an unknown one marked ovf:required="true" makes the package
// one vdc cannot honor (DSP0243 9.1).
var knownSections = map[string]bool{
	"Info": true, "Name": true, "References": true, "DiskSection": true, "NetworkSection": true,
	"DeploymentOptionSection": true, "VirtualSystem": true, "VirtualSystemCollection": true,
	"ProductSection": true, "EulaSection": true, "AnnotationSection": true, "OperatingSystemSection": true,
	"VirtualHardwareSection": true, "StartupSection": true, "ResourceAllocationSection": true,
	"InstallSection": true, "Strings": true, "EnvironmentFilesSection": true, "BootDeviceSection": true,
	"SharedDiskSection": true, "ScaleOutSection": true, "PlacementGroupSection": true, "PlacementSection": true,
	"EncryptionSection": true,
	// What those sections hold.
	"File": true, "Disk": true, "Network": true, "Description": true, "Configuration": true, "Label": true,
	"Property": true, "Category": true, "Value": true, "License": true, "Annotation": true, "Item": true,
	"StorageItem": true, "EthernetPortItem": true, "System": true, "Product": true, "Vendor": true, "Version": true,
	"FullVersion": true, "ProductUrl": true, "VendorUrl": true, "AppUrl": true, "Icon": true,
}

func checkRequired(n *node) error {
	for _, c := range n.children {
		if knownSections[c.kind()] {
			continue
		}
		if v, ok := c.lookup("required"); ok && (v == "true" || v == "1") {
			return invalidf("section <%s> (line %d) is marked required, and vdc does not know what it asks for", c.kind(), c.line)
		}
	}
	return nil
}

// vboxFirmware reads <vbox:Machine><Hardware><Firmware type="EFI"/>.
func vboxFirmware(m *node) string {
	for _, h := range m.children {
		if h.name != "Hardware" {
			continue
		}
		for _, f := range h.children {
			if f.name == "Firmware" {
				return strings.ToLower(f.attr("type"))
			}
		}
	}
	return ""
}
