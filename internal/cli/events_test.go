package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vdc-project/vdc/api"
	"github.com/vdc-project/vdc/client"
)

func TestNormalizeEventQuery(t *testing.T) {
	q := client.EventQuery{Types: []string{api.EventVMPower}, Kind: "vm"}
	if err := normalizeEventQuery(&q); err != nil || q.Kind != api.KindVM {
		t.Errorf("--kind vm: kind %q, %v; want %q", q.Kind, err, api.KindVM)
	}
	q = client.EventQuery{Kind: api.KindHost}
	if err := normalizeEventQuery(&q); err != nil || q.Kind != api.KindHost {
		t.Errorf("--kind hosts: kind %q, %v", q.Kind, err)
	}
	for _, bad := range []client.EventQuery{{Kind: "vmz"}, {Types: []string{"vm.powr"}}} {
		if err := normalizeEventQuery(&bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestPrintEvent(t *testing.T) {
	at := time.Date(2025, 1, 1, 12, 3, 4, 500e6, time.UTC)
	stamp := at.Local().Format("15:04:05.000")
	for _, c := range []struct {
		e    api.Event
		want string
	}{
		{api.Event{Time: at, Type: api.EventVMPower, Message: "vm web1: off → on"}, stamp + "  vm.power         vm web1: off → on"},
		{api.Event{Time: at, Type: api.EventHostConnection, Kind: api.KindHost, Name: "h1", From: "connected", To: "disconnected"},
			stamp + "  host.connection  host h1: connected → disconnected"},
		{api.Event{Time: at, Type: api.EventTask, Message: "vm.create web1: running",
			Task: &api.Task{State: api.TaskRunning, Progress: 40, Message: "copying disk"}},
			stamp + "  task             vm.create web1: running (40%, copying disk)"},
	} {
		var b bytes.Buffer
		if err := printEvent(&b, c.e, false); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSuffix(b.String(), "\n"); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
	var b bytes.Buffer
	e := api.Event{Seq: 7, Time: at, Type: api.EventCreated, Kind: api.KindVM, Name: "web1"}
	_ = printEvent(&b, e, true)
	_ = printEvent(&b, e, true)
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("-o json: want one line per event, got %q", b.String())
	}
	var back api.Event
	if err := json.Unmarshal([]byte(lines[0]), &back); err != nil || back.Seq != 7 || back.Name != "web1" {
		t.Errorf("-o json line %q: %+v, %v", lines[0], back, err)
	}
}
