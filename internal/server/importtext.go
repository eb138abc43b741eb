package server

import (
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/ovf"
)

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
