package ovf

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// scaledBytes reads a quantity with programmatic units (DSP0004): "30"
// with "byte * 2^20", or the older names VirtualBox and others write
// ("MegaBytes", "MB"). It refuses results that do not fit an int64.
func scaledBytes(qty, units, base string) (int64, error) {
	n, ok := new(big.Int).SetString(strings.TrimSpace(qty), 10)
	if !ok || n.Sign() < 0 {
		return 0, fmt.Errorf("%q is not a whole number", qty)
	}
	mult, err := unitMultiplier(units, base)
	if err != nil {
		return 0, err
	}
	n.Mul(n, mult)
	if !n.IsInt64() {
		return 0, errors.New("the size does not fit in 64 bits")
	}
	return n.Int64(), nil
}

var legacyUnits = map[string]int64{
	"b": 1, "byte": 1, "bytes": 1,
	"kb": 1 << 10, "kilobyte": 1 << 10, "kilobytes": 1 << 10, "kib": 1 << 10,
	"mb": 1 << 20, "megabyte": 1 << 20, "megabytes": 1 << 20, "mib": 1 << 20,
	"gb": 1 << 30, "gigabyte": 1 << 30, "gigabytes": 1 << 30, "gib": 1 << 30,
	"tb": 1 << 40, "terabyte": 1 << 40, "terabytes": 1 << 40, "tib": 1 << 40,
}

var factorRE = regexp.MustCompile(`^(\d+)(?:\s*\^\s*(-?\d+))?$`)

func unitMultiplier(units, base string) (*big.Int, error) {
	u := strings.TrimSpace(units)
	if u == "" {
		return big.NewInt(1), nil
	}
	if m, ok := legacyUnits[strings.ToLower(u)]; ok && base == "byte" {
		return big.NewInt(m), nil
	}
	parts := strings.Split(u, "*")
	head := strings.ToLower(strings.TrimSpace(parts[0]))
	if head != base && head != base+"s" {
		return nil, fmt.Errorf("unit %q is not a multiple of %s", units, base)
	}
	mult := big.NewInt(1)
	for _, p := range parts[1:] {
		m := factorRE.FindStringSubmatch(strings.TrimSpace(p))
		if m == nil {
			return nil, fmt.Errorf("cannot read unit %q", units)
		}
		b, _ := new(big.Int).SetString(m[1], 10)
		if m[2] != "" {
			e, err := strconv.Atoi(m[2])
			if err != nil || e < 0 || e > 80 {
				return nil, fmt.Errorf("unit %q has an exponent out of range", units)
			}
			b.Exp(b, big.NewInt(int64(e)), nil)
		}
		mult.Mul(mult, b)
		if mult.BitLen() > 128 {
			return nil, fmt.Errorf("unit %q is out of range", units)
		}
	}
	return mult, nil
}

var propTypes = map[string]bool{
	"uint8": true, "sint8": true, "uint16": true, "sint16": true, "uint32": true, "sint32": true,
	"uint64": true, "sint64": true, "string": true, "boolean": true, "real32": true, "real64": true,
}

func knownType(t string) bool { return propTypes[t] }

// normType accepts the type names packages use beside OVF's own: "int"
// (govmomi, many appliances), "real", capitalized names.
func normType(t string) string {
	switch l := strings.ToLower(t); l {
	case "int", "integer":
		return "sint32"
	case "real":
		return "real64"
	case "boolean", "string":
		return l
	}
	return t
}

var valueMapRE = regexp.MustCompile(`ValueMap\{([^}]*)\}`)

// allowedValues reads the ValueMap{"a","b"} qualifier.
func allowedValues(q string) []string {
	m := valueMapRE.FindStringSubmatch(q)
	if m == nil {
		return nil
	}
	var out []string
	for _, v := range strings.Split(m[1], ",") {
		out = append(out, strings.Trim(strings.TrimSpace(v), `"`))
	}
	return out
}

var (
	minLenRE = regexp.MustCompile(`MinLen\((\d+)\)`)
	maxLenRE = regexp.MustCompile(`MaxLen\((\d+)\)`)
)

// Check says whether v is a valid value of the property.
func (p *Property) Check(v string) error {
	switch p.Type {
	case "boolean":
		if v != "true" && v != "false" && v != "True" && v != "False" {
			return fmt.Errorf("%q is not true or false", v)
		}
	case "real32", "real64":
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return fmt.Errorf("%q is not a number", v)
		}
	case "string":
		if m := minLenRE.FindStringSubmatch(p.Qualifiers); m != nil {
			if n, _ := strconv.Atoi(m[1]); len(v) < n {
				return fmt.Errorf("is %d characters long; at least %d are needed", len(v), n)
			}
		}
		if m := maxLenRE.FindStringSubmatch(p.Qualifiers); m != nil {
			if n, _ := strconv.Atoi(m[1]); len(v) > n {
				return fmt.Errorf("is %d characters long; at most %d are allowed", len(v), n)
			}
		}
	default:
		bits, _ := strconv.Atoi(p.Type[len(p.Type)-2:])
		if p.Type[len(p.Type)-1] == '8' {
			bits = 8
		}
		var err error
		if p.Type[0] == 'u' {
			_, err = strconv.ParseUint(v, 10, bits)
		} else {
			_, err = strconv.ParseInt(v, 10, bits)
		}
		if err != nil {
			return fmt.Errorf("%q is not a %s", v, p.Type)
		}
	}
	if len(p.Values) > 0 {
		for _, a := range p.Values {
			if a == v {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(p.Values, ", "))
	}
	return nil
}

// mhzOrCount guards a CPU count read from an untrusted file.
func clampInt(n int64) int {
	if n > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(n)
}
