package hostha

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/internal/testenv"
)

func TestParseDefaultGateway(t *testing.T) {
	// /proc/net/route prints addresses as host-order integers.
	hex := itox(binary.NativeEndian.Uint32([]byte{10, 1, 2, 1}))
	table := "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t0001010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth0\t00000000\t" + hex + "\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	got, err := parseDefaultGateway(strings.NewReader(table))
	if err != nil || got != "10.1.2.1" {
		t.Fatalf("default gateway: %q %v", got, err)
	}
	if _, err := parseDefaultGateway(strings.NewReader("Iface\tDestination\tGateway\n")); err == nil {
		t.Fatal("no default route: want an error")
	}
}

func itox(v uint32) string {
	const digits = "0123456789ABCDEF"
	b := make([]byte, 8)
	for i := 7; i >= 0; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}

func TestPing(t *testing.T) {
	ctx := context.Background()
	if !ping(ctx, "127.0.0.1", 2*time.Second) {
		testenv.Skip(t, "no ICMP socket here (neither raw nor unprivileged)")
	}
	// TEST-NET-3 is never routed: no answer.
	start := time.Now()
	if ping(ctx, "203.0.113.7", 300*time.Millisecond) {
		t.Fatal("an answer from TEST-NET-3")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("ping did not respect its timeout: %s", d)
	}
}

func TestServerIsLocal(t *testing.T) {
	for u, want := range map[string]bool{
		"https://127.0.0.1:7443": true, "https://localhost:7443": true, "https://[::1]:7443": true,
		"https://10.0.0.1:7443": false, "https://mgmt.example:7443": false,
	} {
		if got := ServerIsLocal(u); got != want {
			t.Errorf("%s: local=%v, want %v", u, got, want)
		}
	}
}
