package api

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a number of bytes. In JSON it is written as an integer and read
// from an integer or from a string such as "512MiB" or "10G".
type Size int64

// Size units are binary whatever their spelling, as in qemu-img and Proxmox:
// 10G, 10GB and 10GiB are all 10×2³⁰ bytes.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
	"p": 1 << 50, "pb": 1 << 50, "pib": 1 << 50,
	"e": 1 << 60, "eb": 1 << 60, "eib": 1 << 60,
}

// ParseSize reads "512MiB", "10G", "1.5 GiB" or a plain number of bytes.
func ParseSize(s string) (Size, error) {
	in := strings.TrimSpace(s)
	if in == "" {
		return 0, Errorf(ErrInvalid, "empty size")
	}
	i := 0
	for i < len(in) && (in[i] >= '0' && in[i] <= '9' || in[i] == '.' || in[i] == '-' || in[i] == '+') {
		i++
	}
	num, unit := in[:i], strings.ToLower(strings.TrimSpace(in[i:]))
	mult, ok := sizeUnits[unit]
	if !ok || num == "" {
		return 0, Errorf(ErrInvalid, "size %q: want a number with an optional unit (B, KiB, MiB, GiB, TiB, PiB, EiB; K, M, G... are the same)", s)
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n < 0 {
			return 0, Errorf(ErrInvalid, "size %q is negative", s)
		}
		if n > math.MaxInt64/mult {
			return 0, Errorf(ErrInvalid, "size %q is too large", s)
		}
		return Size(n * mult), nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, Errorf(ErrInvalid, "size %q: %q is not a number", s, num)
	}
	if f < 0 {
		return 0, Errorf(ErrInvalid, "size %q is negative", s)
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, Errorf(ErrInvalid, "size %q is too large", s)
	}
	return Size(math.Round(v)), nil
}

// MustSize parses a size known to be valid (constants, tests).
func MustSize(s string) Size {
	v, err := ParseSize(s)
	if err != nil {
		panic(err)
	}
	return v
}

// String formats the size with a binary unit: "1 GiB", "1.5 GiB", "512 MiB".
func (s Size) String() string {
	v := int64(s)
	if v < 0 {
		return "-" + Size(-v).String()
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	u := 0
	f := float64(v)
	for f >= 1024 && u < len(units)-1 {
		f /= 1024
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%d B", v)
	}
	if f == math.Trunc(f) {
		return fmt.Sprintf("%.0f %s", f, units[u])
	}
	return fmt.Sprintf("%.1f %s", f, units[u])
}

// UnmarshalJSON accepts 1073741824 or "1GiB".
func (s *Size) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		v, err := ParseSize(str)
		if err != nil {
			return err
		}
		*s = v
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return Errorf(ErrInvalid, "size must be a number of bytes or a string like \"10GiB\", got %s", b)
	}
	v, err := n.Int64()
	if err != nil {
		return Errorf(ErrInvalid, "size %s is not a whole number of bytes", n)
	}
	*s = Size(v)
	return nil
}
