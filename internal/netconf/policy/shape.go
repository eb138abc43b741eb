package policy

import (
	"fmt"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/internal/netconf"
)

const (
	// qdiscMajor is the handle major of every root qdisc vdc sets ("vd"):
	// how Converge tells its qdiscs from anyone else's.
	qdiscMajor = 0x7664
	// filterPrio is the priority of the redirect filter on a tap's ingress.
	filterPrio = 0x7664

	minRate     = 8000     // bit/s; below this tbf's byte rate rounds to nothing
	minBurst    = 64 << 10 // bytes: a whole GSO super-frame passes unsplit
	burstTime   = 10 * time.Millisecond
	queueTime   = 50 * time.Millisecond
	maxBurstFor = 250 * time.Second // tbf keeps the burst as a 32-bit count of 64 ns ticks
	frameExtra  = 14 + 8            // Ethernet header and two VLAN tags above the MTU
)

func validateShape(s netconf.Shape) error {
	if s.AverageBitsPerSec == 0 {
		if s.PeakBitsPerSec != 0 || s.BurstBytes != 0 {
			return fmt.Errorf("peak or burst without an average rate: %w", api.ErrInvalid)
		}
		return nil
	}
	if s.AverageBitsPerSec < minRate {
		return fmt.Errorf("average %d bit/s is below %d bit/s: %w", s.AverageBitsPerSec, minRate, api.ErrInvalid)
	}
	if s.PeakBitsPerSec != 0 && s.PeakBitsPerSec < s.AverageBitsPerSec {
		return fmt.Errorf("peak %d bit/s is below the average %d bit/s: %w", s.PeakBitsPerSec, s.AverageBitsPerSec, api.ErrInvalid)
	}
	if t := time.Duration(float64(s.BurstBytes) * 8 / float64(s.AverageBitsPerSec) * float64(time.Second)); t > maxBurstFor {
		return fmt.Errorf("burst of %d bytes lasts %s at the average rate, more than %s: %w", s.BurstBytes, t.Round(time.Second), maxBurstFor, api.ErrInvalid)
	}
	return nil
}

// tbfFor is the tbf qdisc that enforces s at the root of link, for frames
// up to mtu (the device's MTU).
func tbfFor(link int, s netconf.Shape, mtu int) *netlink.Tbf {
	rate := s.AverageBitsPerSec / 8
	frame := uint64(max(mtu, 1500) + frameExtra)
	burst := s.BurstBytes
	if burst == 0 {
		burst = max(minBurst, rate*uint64(burstTime)/uint64(time.Second))
	}
	burst = max(burst, frame)
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: link,
			Handle:    netlink.MakeHandle(qdiscMajor, 0),
			Parent:    netlink.HANDLE_ROOT,
		},
		Rate:   rate,
		Buffer: netlink.Xmittime(rate, uint32(min(burst, 1<<32-1))),
		Limit:  uint32(min(burst+rate*uint64(queueTime)/uint64(time.Second), 1<<32-1)),
	}
	if s.PeakBitsPerSec != 0 {
		// tbf wants the peak strictly above the average; one byte/s more
		// than the average is a peak equal to it in all but name.
		q.Peakrate = max(s.PeakBitsPerSec/8, rate+1)
		q.Minburst = uint32(frame)
	}
	return q
}

// sameTbf says whether the kernel's qdisc already is want. The kernel does
// not report the peak bucket's size, so a qdisc with a peak is never taken
// as the same (Converge then changes it in place, which costs nothing but
// a refilled bucket).
func sameTbf(have netlink.Qdisc, want *netlink.Tbf) bool {
	t, ok := have.(*netlink.Tbf)
	if !ok || t.Handle != want.Handle || t.Parent != want.Parent {
		return false
	}
	return want.Peakrate == 0 && t.Peakrate == 0 &&
		t.Rate == want.Rate && t.Buffer == want.Buffer && t.Limit == want.Limit
}

func zero(s netconf.Shape) bool { return s.AverageBitsPerSec == 0 }
