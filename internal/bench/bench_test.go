package bench

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
)

// The results are what `vdc bench ... -o json` prints, which scripts and
// docs/PERFORMANCE.md read: their field names are a format.
func TestResultJSONFieldNames(t *testing.T) {
	for _, c := range []struct {
		res  any
		want string
	}{
		{APIResult{}, `{"vms":0,"hosts":0,"concurrency":0,"createSeconds":0,"createsPerSecond":0,"createP50Ms":0,"createP99Ms":0,"createErrors":0,` +
			`"powerOnSeconds":0,"powerOnsPerSecond":0,"powerOnP50Ms":0,"powerOnP99Ms":0,"powerOnErrors":0,"listP50Ms":0,"listP99Ms":0,"listBytes":0,` +
			`"serverCpuPerCreateMs":0,"serverCpuPerPowerOnMs":0,"serverRssMiB":0,"serverPeakRssMiB":0}`},
		{BootResult{}, `{"accel":"","runs":0,"plainQemuMedianMs":0,"plainQemuMinMs":0,"vdcMedianMs":0,"vdcMinMs":0,"ratio":0,"vms":0,` +
			`"agentRssMiB":0,"agentIdleRssMiB":0,"qemuRssMiBEach":0,"allGuestsUpSeconds":0}`},
		{HAResult{}, `{"vms":0,"hosts":0,"failedHosts":0,"detectionSetSeconds":0,"heartbeatSeconds":0,"detectedSeconds":0,` +
			`"restartedP50Seconds":0,"restartedP99Seconds":0,"restartedMaxSeconds":0,"lastRestartAfterDetectionSeconds":0,"restarted":0}`},
		{MigrateResult{Accel: "tcg", Runs: 1, Rows: []MigrateRow{{Case: MigrateCase{Memory: api.MustSize("256MiB"), Dirty: true},
			Vdc: MigrateTimes{Total: 1, Downtime: 2, EndToEnd: 3, Prepare: 4, Switch: 5}}}},
			`{"accel":"tcg","runs":1,"rows":[{"case":{"memory":268435456,"dirtying":true},` +
				`"plainQemu":{"totalMs":0,"downtimeMs":0,"endToEndMs":0},"plainQemuTls":{"totalMs":0,"downtimeMs":0,"endToEndMs":0},` +
				`"vdc":{"totalMs":1,"downtimeMs":2,"endToEndMs":3,"prepareMs":4,"switchMs":5},` +
				`"vdcInsecure":{"totalMs":0,"downtimeMs":0,"endToEndMs":0},"ratio":0,"ratioInsecure":0}]}`},
		{StorageResult{}, `{"runs":0,"linkedClone1GiBMedianMs":0,"linkedClone100GiBMedianMs":0,"linkedClone1GiBMaxMs":0,"linkedClone100GiBMaxMs":0,` +
			`"dataBytes":0,"fullCloneMedianMs":0,"qemuImgConvertMedianMs":0,"cpSparseMedianMs":0,"fullCloneMiBps":0,"ratioToQemuImg":0,` +
			`"ratioToCpSparse":0,"freshThin100GiBAllocatedBytes":0}`},
	} {
		b, err := json.Marshal(c.res)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.want {
			t.Errorf("%T as JSON:\n got %s\nwant %s", c.res, b, c.want)
		}
	}
}

func TestPercentilesAndMedian(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // out of order: they sort a copy
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if p50, p99 := percentiles(d); p50 != 50 || p99 != 99 {
		t.Errorf("percentiles of 1..100 ms = %v, %v; want 50, 99", p50, p99)
	}
	if med, lo := median(d); med != 51 || lo != 1 {
		t.Errorf("median of 1..100 ms = %v (min %v); want 51 (min 1)", med, lo)
	}
	if d[0] != 100*time.Millisecond {
		t.Errorf("the input was sorted in place: first is %v", d[0])
	}
	m := medianTimes([]MigrateTimes{{Total: 30, EndToEnd: 1}, {Total: 10, EndToEnd: 3}, {Total: 20, EndToEnd: 2}})
	if m.Total != 20 || m.EndToEnd != 2 {
		t.Errorf("medianTimes = %+v; want each field's own median (Total 20, EndToEnd 2)", m)
	}
}
