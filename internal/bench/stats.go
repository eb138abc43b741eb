package bench

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// percentiles are the p50 and p99 of d, in ms.
func percentiles(d []time.Duration) (p50, p99 float64) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		i := int(q * float64(len(s)-1))
		return float64(s[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99)
}

// median is the median and the minimum of d, in ms.
func median(d []time.Duration) (med, lo float64) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2].Microseconds()) / 1000, float64(s[0].Microseconds()) / 1000
}

func slicesMax(d []time.Duration) time.Duration {
	var m time.Duration
	for _, x := range d {
		m = max(m, x)
	}
	return m
}

// parallel runs op for 0..n-1 on conc workers and returns the wall time,
// each call's latency and the number of failures (the first three of
// which it reports on w).
func parallel(ctx context.Context, w io.Writer, n, conc int, op func(i int) error) (time.Duration, []time.Duration, int64) {
	lat := make([]time.Duration, n)
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				err := op(i)
				lat[i] = time.Since(t0)
				if err != nil && errs.Add(1) <= 3 {
					fmt.Fprintf(w, "vm %d: %v\n", i, err)
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), lat, errs.Load()
}
