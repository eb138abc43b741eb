package ovf

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// ExportVM is what a descriptor says about one VM vdc exports.
type ExportVM struct {
	Name        string
	Description string
	CPUs        int
	MemoryBytes int64
	Disks       []ExportDisk
	NICs        []ExportNIC
	// OSType is VMware's guest OS id (default otherLinux64Guest).
	OSType string
}

// ExportDisk is one disk, stored as a streamOptimized VMDK.
type ExportDisk struct {
	File           string // file name in the package
	FileSize       int64
	CapacityBytes  int64
	PopulatedBytes int64
	Bus            string // virtio, scsi or sata
}

// ExportNIC is one network adapter.
type ExportNIC struct {
	Network string
	Model   string // virtio, e1000, rtl8139
}

// VMDKStreamFormat is the format URI of a streamOptimized VMDK.
const VMDKStreamFormat = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

// VirtualSystemType is the hardware family written: VMware's vmx-10
// (ESXi 5.5 and later, which VirtualBox also reads).
const VirtualSystemType = "vmx-10"

type xw struct {
	b      bytes.Buffer
	indent int
}

func (w *xw) line(format string, args ...any) {
	w.b.WriteString(strings.Repeat("  ", w.indent))
	fmt.Fprintf(&w.b, format, args...)
	w.b.WriteByte('\n')
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// elem writes <prefix:name>text</prefix:name>.
func (w *xw) elem(name, text string) { w.line("<%s>%s</%s>", name, esc(text), name) }

// rasd is one item's properties; they are written in the alphabetical
// order the CIM schema demands (ovftool validates it).
type rasd map[string]string

var rasdOrder = []string{"Address", "AddressOnParent", "AllocationUnits", "AutomaticAllocation", "Caption", "Connection",
	"Description", "ElementName", "HostResource", "InstanceID", "Parent", "ResourceSubType", "ResourceType", "VirtualQuantity"}

func (w *xw) item(tag, prefix string, r rasd, vdc map[string]string) {
	w.line("<%s>", tag)
	w.indent++
	for _, k := range rasdOrder {
		if v, ok := r[k]; ok {
			w.elem(prefix+":"+k, v)
		}
	}
	for _, k := range []string{"bus", "model", "controller"} {
		if v, ok := vdc[k]; ok {
			w.line(`<vdc:Config ovf:required="false" vdc:key="%s" vdc:value="%s"/>`, k, esc(v))
		}
	}
	w.indent--
	w.line("</%s>", tag)
}

// WriteDescriptor writes an OVF descriptor (version "1.0" or "2.0") for
// one VM whose disks are streamOptimized VMDKs, in the shape VMware
// ovftool and VirtualBox import: vmx-NN hardware, CPU and memory items,
// an LSI Logic SCSI and a SATA (AHCI) controller, E1000 adapters. What
// only vdc knows (virtio disks and NICs) rides along in vdc:Config
// elements marked not required, which the others ignore.
func WriteDescriptor(out io.Writer, vm ExportVM, version string) error {
	if version == "" {
		version = "1.0"
	}
	ns := NS1
	if version == "2.0" {
		ns = NS2
	} else if version != "1.0" {
		return fmt.Errorf("write OVF: version %q: vdc writes 1.0 or 2.0", version)
	}
	w := &xw{}
	w.line(`<?xml version="1.0" encoding="UTF-8"?>`)
	extra := ""
	if version == "2.0" {
		extra = fmt.Sprintf(` xmlns:sasd="%s" xmlns:epasd="%s"`, SASDNS, EPASDNS)
	}
	w.line(`<Envelope ovf:version="%s" xmlns="%s" xmlns:ovf="%s" xmlns:cim="%s" xmlns:rasd="%s" xmlns:vssd="%s" xmlns:vmw="%s" xmlns:vdc="%s" xmlns:xsi="%s"%s>`,
		version, ns, ns, CIMNS, RASDNS, VSSDNS, VMWNS, VdcNS, xsiNS, extra)
	w.indent++
	w.references(vm)
	w.diskSection(vm)
	w.networkSection(vm)
	w.virtualSystem(vm, version)
	w.indent--
	w.line("</Envelope>")
	_, err := out.Write(w.b.Bytes())
	return err
}

// references lists the disks' files.
func (w *xw) references(vm ExportVM) {
	w.line("<References>")
	w.indent++
	for i, d := range vm.Disks {
		w.line(`<File ovf:href="%s" ovf:id="file%d" ovf:size="%d"/>`, esc(d.File), i+1, d.FileSize)
	}
	w.indent--
	w.line("</References>")
}

func (w *xw) diskSection(vm ExportVM) {
	w.line("<DiskSection>")
	w.indent++
	w.elem("Info", "Virtual disk information")
	for i, d := range vm.Disks {
		pop := ""
		if d.PopulatedBytes > 0 {
			pop = fmt.Sprintf(` ovf:populatedSize="%d"`, d.PopulatedBytes)
		}
		w.line(`<Disk ovf:capacity="%d" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk%d" ovf:fileRef="file%d" ovf:format="%s"%s/>`,
			d.CapacityBytes, i+1, i+1, VMDKStreamFormat, pop)
	}
	w.indent--
	w.line("</DiskSection>")
}

// networkSection lists the networks the NICs connect to, once each.
func (w *xw) networkSection(vm ExportVM) {
	var nets []string
	for _, n := range vm.NICs {
		if !contains(nets, n.Network) {
			nets = append(nets, n.Network)
		}
	}
	w.line("<NetworkSection>")
	w.indent++
	w.elem("Info", "The list of logical networks")
	for _, n := range nets {
		w.line(`<Network ovf:name="%s">`, esc(n))
		w.indent++
		w.elem("Description", "The "+n+" network")
		w.indent--
		w.line("</Network>")
	}
	w.indent--
	w.line("</NetworkSection>")
}

func (w *xw) virtualSystem(vm ExportVM, version string) {
	w.line(`<VirtualSystem ovf:id="%s">`, esc(vm.Name))
	w.indent++
	w.elem("Info", "A virtual machine")
	w.elem("Name", vm.Name)
	if vm.Description != "" {
		w.line("<AnnotationSection>")
		w.indent++
		w.elem("Info", "A human-readable annotation")
		w.elem("Annotation", vm.Description)
		w.indent--
		w.line("</AnnotationSection>")
	}
	osType := vm.OSType
	if osType == "" {
		osType = "otherLinux64Guest"
	}
	w.line(`<OperatingSystemSection ovf:id="%d" vmw:osType="%s">`, osTypeCIM(osType), esc(osType))
	w.indent++
	w.elem("Info", "The kind of installed guest operating system")
	w.indent--
	w.line("</OperatingSystemSection>")
	w.hardware(vm, version)
	w.indent--
	w.line("</VirtualSystem>")
}

// hardware writes the VirtualHardwareSection: CPUs, memory, the disk
// controllers, the disks and the NICs, numbered in that order.
func (w *xw) hardware(vm ExportVM, version string) {
	w.line("<VirtualHardwareSection>")
	w.indent++
	w.elem("Info", "Virtual hardware requirements")
	w.line("<System>")
	w.indent++
	w.elem("vssd:ElementName", "Virtual Hardware Family")
	w.elem("vssd:InstanceID", "0")
	w.elem("vssd:VirtualSystemIdentifier", vm.Name)
	w.elem("vssd:VirtualSystemType", VirtualSystemType)
	w.indent--
	w.line("</System>")
	id := 0
	next := func() string { id++; return fmt.Sprint(id) }
	w.item("Item", "rasd", rasd{"AllocationUnits": "hertz * 10^6", "Description": "Number of Virtual CPUs",
		"ElementName": fmt.Sprintf("%d virtual CPU(s)", vm.CPUs), "InstanceID": next(), "ResourceType": "3",
		"VirtualQuantity": fmt.Sprint(vm.CPUs)}, nil)
	w.item("Item", "rasd", rasd{"AllocationUnits": "byte * 2^20", "Description": "Memory Size",
		"ElementName": fmt.Sprintf("%dMB of memory", vm.MemoryBytes>>20), "InstanceID": next(), "ResourceType": "4",
		"VirtualQuantity": fmt.Sprint(vm.MemoryBytes >> 20)}, nil)
	scsiID, sataID := w.controllers(vm, next)
	w.diskItems(vm, version, scsiID, sataID, next)
	w.nicItems(vm, version, next)
	w.indent--
	w.line("</VirtualHardwareSection>")
}

// controllers writes the SCSI and SATA controllers the disks need, and
// returns their instance IDs ("" for one not needed).
func (w *xw) controllers(vm ExportVM, next func() string) (scsiID, sataID string) {
	for _, d := range vm.Disks {
		if d.Bus == BusSATA && sataID == "" {
			sataID = next()
			w.item("Item", "rasd", rasd{"Address": "0", "Description": "SATA Controller", "ElementName": "SATA Controller 0",
				"InstanceID": sataID, "ResourceSubType": "vmware.sata.ahci", "ResourceType": "20"}, nil)
		}
		if d.Bus != BusSATA && scsiID == "" {
			scsiID = next()
			w.item("Item", "rasd", rasd{"Address": "0", "Description": "SCSI Controller", "ElementName": "SCSI Controller 0",
				"InstanceID": scsiID, "ResourceSubType": "lsilogic", "ResourceType": "6"}, map[string]string{"controller": "virtio-scsi"})
		}
	}
	return scsiID, sataID
}

func (w *xw) diskItems(vm ExportVM, version, scsiID, sataID string, next func() string) {
	diskTag, diskPrefix := "Item", "rasd"
	if version == "2.0" {
		diskTag, diskPrefix = "StorageItem", "sasd"
	}
	scsiUnit, sataUnit := 0, 0
	for i, d := range vm.Disks {
		parent, unit := scsiID, &scsiUnit
		if d.Bus == BusSATA {
			parent, unit = sataID, &sataUnit
		}
		if *unit == 7 && parent == scsiID {
			*unit++ // the SCSI controller's own unit
		}
		var vdc map[string]string
		if d.Bus == BusVirtio {
			vdc = map[string]string{"bus": BusVirtio}
		}
		w.item(diskTag, diskPrefix, rasd{"AddressOnParent": fmt.Sprint(*unit), "ElementName": fmt.Sprintf("Hard disk %d", i+1),
			"HostResource": fmt.Sprintf("ovf:/disk/vmdisk%d", i+1), "InstanceID": next(), "Parent": parent, "ResourceType": "17"}, vdc)
		*unit++
	}
}

func (w *xw) nicItems(vm ExportVM, version string, next func() string) {
	nicTag, nicPrefix := "Item", "rasd"
	if version == "2.0" {
		nicTag, nicPrefix = "EthernetPortItem", "epasd"
	}
	for i, n := range vm.NICs {
		var vdc map[string]string
		if n.Model != "" && n.Model != "e1000" {
			vdc = map[string]string{"model": n.Model}
		}
		w.item(nicTag, nicPrefix, rasd{"AddressOnParent": fmt.Sprint(7 + i), "AutomaticAllocation": "true", "Connection": n.Network,
			"Description": fmt.Sprintf("E1000 ethernet adapter on %q", n.Network), "ElementName": fmt.Sprintf("Network adapter %d", i+1),
			"InstanceID": next(), "ResourceSubType": "E1000", "ResourceType": "10"}, vdc)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// osTypeCIM gives the CIM OS id that goes with a VMware guest id.
func osTypeCIM(t string) int {
	switch {
	case strings.HasPrefix(t, "windows"), strings.HasPrefix(t, "win"):
		return 1
	case strings.HasPrefix(t, "ubuntu64"):
		return 94
	case strings.HasPrefix(t, "debian") && strings.HasSuffix(t, "64Guest"):
		return 96
	case strings.HasSuffix(t, "64Guest"):
		return 101
	}
	return 36
}
