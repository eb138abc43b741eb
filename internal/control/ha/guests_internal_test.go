package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

func TestGuestVerdict(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	m := api.VMMonitoring{Enabled: true, FailureIntervalSeconds: 30, MinUptimeSeconds: 120, MaxResets: 3, ResetWindowSeconds: 3600}
	vm := func(state string, lastSeen, poweredOn time.Duration, resets ...time.Duration) *api.VM {
		v := &api.VM{Status: api.VMStatus{PowerState: api.PowerOn, PowerChanged: ago(poweredOn),
			Guest: &api.GuestInfo{State: state, LastSeen: ago(lastSeen)}}}
		for _, r := range resets {
			v.Status.HAResets = append(v.Status.HAResets, ago(r))
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		vm    *api.VM
		reset bool
		why   string
	}{
		{"answers", vm(api.GuestRunning, time.Second, time.Hour), false, "answers"},
		{"silent past the interval", vm(api.GuestNotResponding, 40*time.Second, time.Hour), true, "silent for 40s; reset 1 of 3"},
		{"silent, not long enough", vm(api.GuestNotResponding, 20*time.Second, time.Hour), false, "silent only 20s"},
		{"too soon after power-on", vm(api.GuestNotResponding, 40*time.Second, 100*time.Second), false, "up only"},
		{"resets ran out", vm(api.GuestNotResponding, 40*time.Second, time.Hour, 50*time.Minute, 30*time.Minute, 10*time.Minute), false, "already reset 3 times"},
		{"an old reset is out of the window", vm(api.GuestNotResponding, 40*time.Second, 3*time.Hour, 2*time.Hour, 30*time.Minute, 10*time.Minute), true, "reset 3 of 3"},
		{"never answered again after our reset", vm(api.GuestNotInstalled, time.Hour, time.Hour, 5*time.Minute), true, "silent for 5m0s"},
		{"our reset was 60 s ago, min uptime 120 s", vm(api.GuestNotInstalled, time.Hour, time.Hour, time.Minute), false, "up only 1m0s"},
		{"never had an agent", vm(api.GuestNotInstalled, time.Hour, time.Hour), false, "no guest agent answered"},
		{"its agent has yet to start", vm(api.GuestNotRunning, time.Hour, time.Hour), false, "no guest agent answered"},
	} {
		got, why := guestVerdict(tc.vm, m, now)
		if got != tc.reset || !strings.Contains(why, tc.why) {
			t.Errorf("%s: reset=%v (%s), want %v (%s)", tc.name, got, why, tc.reset, tc.why)
		}
	}
	off := vm(api.GuestNotResponding, time.Hour, time.Hour)
	off.Status.PowerState = api.PowerOff
	if ok, _ := guestVerdict(off, m, now); ok {
		t.Error("a VM that is off was to be reset")
	}
}
