package netcmd

import (
	"strings"
	"testing"

	"github.com/vdc-project/vdc/api"
)

func TestParseShape(t *testing.T) {
	s, err := parseShape("--shape-in", "100Mbit,peak=1.5Gbit/s,burst=1MiB")
	if err != nil || s.AverageBitsPerSec != 100e6 || s.PeakBitsPerSec != 1.5e9 || s.BurstBytes != api.MustSize("1MiB") {
		t.Fatalf("parseShape = %+v, %v", s, err)
	}
	if s, err := parseShape("--shape-out", "64kbit"); err != nil || s.AverageBitsPerSec != 64000 {
		t.Fatalf("64kbit = %+v, %v", s, err)
	}
	for _, bad := range []string{"0", "-5Mbit", "fast", "10Mbit,peak=0", "10Mbit,color=red", "2Tbit"} {
		if _, err := parseShape("--shape-in", bad); err == nil || !strings.Contains(err.Error(), "--shape-in") {
			t.Errorf("parseShape(%q) = %v; want an error naming the flag", bad, err)
		}
	}
	if got := shapeString(&api.TrafficShape{AverageBitsPerSec: 20e6, PeakBitsPerSec: 1e9, BurstBytes: api.MustSize("64KiB")}); got != "average 20 Mbit/s, peak 1 Gbit/s, burst 64 KiB" {
		t.Fatalf("shapeString = %q", got)
	}
}
