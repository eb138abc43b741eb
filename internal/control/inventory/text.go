package inventory

import (
	"fmt"
	"strings"

	"github.com/vdc-project/vdc/api"
)

const maxLabels = 64

func ValidateLabels(l map[string]string) error {
	if len(l) > maxLabels {
		return api.Errorf(api.ErrInvalid, "at most %d labels, got %d", maxLabels, len(l))
	}
	for k, v := range l {
		if err := validateLabelKey(k); err != nil {
			return err
		}
		if len(v) > 253 {
			return api.Errorf(api.ErrInvalid, "label %q: keys and values are at most 253 characters", k)
		}
		if err := api.ValidateText(fmt.Sprintf("label %q value", k), v); err != nil {
			return err
		}
	}
	return nil
}

// validateLabelKey accepts keys like "tier" or "sim.vdc.io/ignore-acpi".
func validateLabelKey(k string) error {
	if k == "" || len(k) > 253 {
		return api.Errorf(api.ErrInvalid, "label key %q must be 1-253 characters", k)
	}
	for i, r := range k {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("-_./", r)) {
			return api.Errorf(api.ErrInvalid, "label key %q: use letters, digits, '-', '_', '.' and '/', starting with a letter or digit", k)
		}
	}
	return nil
}

func ValidateDescription(d string) error {
	if len(d) > api.MaxDescription {
		return api.Errorf(api.ErrInvalid, "description is %d characters long; the limit is %d", len(d), api.MaxDescription)
	}
	return api.ValidateText("description", d)
}

// ValidateCommon checks the fields every create/update request shares.
func ValidateCommon(kind, name string, labels map[string]string, desc string) error {
	if err := api.ValidateName(kind, name); err != nil {
		return err
	}
	if err := ValidateLabels(labels); err != nil {
		return err
	}
	return ValidateDescription(desc)
}

// Rename applies an optional new name.
func Rename(kind string, m *api.ObjectMeta, name *string) error {
	if name == nil {
		return nil
	}
	if err := api.ValidateName(kind, *name); err != nil {
		return err
	}
	m.Name = *name
	return nil
}

// Relabel merges label changes; an empty value removes a label.
func Relabel(m *api.ObjectMeta, l map[string]string) error {
	if l == nil {
		return nil
	}
	if m.Labels == nil {
		m.Labels = map[string]string{}
	}
	for k, v := range l {
		if v == "" {
			delete(m.Labels, k)
		} else {
			m.Labels[k] = v
		}
	}
	return ValidateLabels(m.Labels)
}

func Redescribe(d *string, to *string) error {
	if to == nil {
		return nil
	}
	if err := ValidateDescription(*to); err != nil {
		return err
	}
	*d = *to
	return nil
}

// PickDatacenter is the datacenter named, or the only one.
func (in *Inventory) PickDatacenter(name string) (*api.Datacenter, error) {
	o, err := in.Pick(api.KindDatacenter, name, nil)
	if err != nil {
		return nil, err
	}
	return o.(*api.Datacenter), nil
}

// PickCluster is the cluster named, or the only one.
func (in *Inventory) PickCluster(name string) (*api.Cluster, error) {
	o, err := in.Pick(api.KindCluster, name, nil)
	if err != nil {
		return nil, err
	}
	return o.(*api.Cluster), nil
}
