package ovf

import (
	"bytes"
	"fmt"
	"sort"
)

// Environment writes the OVF environment document (ovf-env.xml, DSP0243
// section 11) that hands a guest its properties: what VMware puts on the
// "ISO" transport's CD-ROM and cloud-init's OVF datasource reads.
func Environment(vmID string, props []PropertyValue) []byte {
	var w xw
	w.line(`<?xml version="1.0" encoding="UTF-8"?>`)
	w.line(`<Environment xmlns="%s" xmlns:oe="%s" xmlns:xsi="%s" oe:id="%s">`, EnvNS, EnvNS, xsiNS, esc(vmID))
	w.indent++
	w.line("<PlatformSection>")
	w.indent++
	w.elem("Kind", "vdc")
	w.indent--
	w.line("</PlatformSection>")
	w.line("<PropertySection>")
	w.indent++
	sorted := append([]PropertyValue(nil), props...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })
	for _, p := range sorted {
		w.line(`<Property oe:key="%s" oe:value="%s"/>`, esc(p.Key), esc(p.Value))
	}
	w.indent--
	w.line("</PropertySection>")
	w.indent--
	w.line("</Environment>")
	return w.b.Bytes()
}

// CloudInitUserData renders properties for cloud-init's NoCloud datasource
// as well: a guest without the OVF datasource still finds them, as
// instance metadata, under /run/cloud-init (and as a plain file on the
// CD-ROM, vdc-properties.env, one KEY=VALUE a line for scripts).
func PropertiesEnv(props []PropertyValue) []byte {
	var b bytes.Buffer
	sorted := append([]PropertyValue(nil), props...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Key < sorted[j].Key })
	for _, p := range sorted {
		fmt.Fprintf(&b, "%s=%q\n", p.Key, p.Value)
	}
	return b.Bytes()
}
